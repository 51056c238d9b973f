"""Helpers for tests (here and in training/serving tests): tiny configs, random histories, random Batches.

Real tensors at small sizes, so a test of a whole RankerModel runs in milliseconds. Not used by the service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.config import VARIANTS, ModelConfig
from models.features import NO_LOOKUPS, Batch, Lookups
from retrieval.events import BEHAVIOR_DTYPE, Behaviors
from retrieval.item_index import ItemIndex
from retrieval.vocabulary import Vocabulary

NOW = 1_700_000_000
TINY_ITEMS, TINY_CATEGORIES = 60, 4  # the id ranges of ``history`` (the tiny lookups know them all)

__all__ = ["NOW", "VARIANTS", "history", "lookups_for", "make_artifact", "random_batch", "tiny", "tiny_lookups"]


def tiny(variant: str, **overrides: Any) -> ModelConfig:
    """A small config of ``variant``; vocabulary variants are sized to ``tiny_lookups()``."""
    values: dict[str, Any] = {
        "item_buckets": 512,
        "category_buckets": 32,
        "short_len": 6,
        "long_k": 5,
        "item_hits": 2,
        "heads": 2,
        "head_dim": 4,
        "attention_hidden": (8, 4),
        "mlp_dims": (16, 8),
        "n_clusters": 8,
        "nprobe": 8,
        "vector_dim": 8,
        "stats_windows": (3, 10),
        "full_chunk_elements": 16,  # forces din_long to chunk its candidates even in tiny tests
    }
    values.update(overrides)
    config = ModelConfig.for_variant(variant, **values)
    if config.vocabulary:
        lookups, _ = tiny_lookups(config.vector_dim)
        assert lookups.items is not None and lookups.categories is not None
        config = config.replace(item_buckets=lookups.items.vocab.size, category_buckets=lookups.categories.size)
    return config


def lookups_for(histories: list[Behaviors], vector_dim: int, n_clusters: int = 8, seed: int = 0,
                strong_action: int = 2) -> tuple[Lookups, ItemIndex]:  # fmt: skip
    """Item tables fitted on ``histories`` (retrieval.item_graph), their category vocabulary and item index."""
    from retrieval.item_graph import fit_item_tables

    tables = fit_item_tables(histories, strong_action, dim=vector_dim, window=3, neighbours=4, seed=seed)
    cats = np.concatenate([h["category_id"] for h in histories]).astype(np.int64)
    index = ItemIndex.build(tables.vectors, n_clusters=min(n_clusters, tables.vocab.size - 1), seed=seed,
                            vocab=tables.vocab)  # fmt: skip
    return Lookups(tables, Vocabulary.fit(cats, overflow=4)), index


_TINY: dict[int, tuple[Lookups, ItemIndex]] = {}


def tiny_lookups(vector_dim: int = 8) -> tuple[Lookups, ItemIndex]:
    """Lookups over every id ``history`` draws (items < TINY_ITEMS, categories < TINY_CATEGORIES), fitted once."""
    if vector_dim not in _TINY:
        rng = np.random.default_rng(12345)
        _TINY[vector_dim] = lookups_for([history(rng, 400) for _ in range(20)], vector_dim)
    return _TINY[vector_dim]


def lookups_of(config: ModelConfig) -> Lookups:
    """The lookups a tiny config needs (NO_LOOKUPS for hashing configs)."""
    return tiny_lookups(config.vector_dim)[0] if config.vocabulary else NO_LOOKUPS


def gsu_of(config: ModelConfig) -> Any:
    """The GSU of a tiny config (retrieval.gsu_hybrid.build_gsu over the tiny item index)."""
    from retrieval.gsu_hybrid import build_gsu

    index = tiny_lookups(config.vector_dim)[1] if config.vocabulary else None
    return build_gsu(config.gsu, config.long_k, index, config.nprobe, config.item_hits)


def history(rng: np.random.Generator, n: int, n_items: int = TINY_ITEMS, n_cats: int = TINY_CATEGORIES) -> Behaviors:
    h = np.zeros(n, dtype=BEHAVIOR_DTYPE)
    h["ts"] = np.sort(rng.integers(NOW - 10_000_000, NOW - 1, n))
    h["item_id"] = rng.integers(0, n_items, n)
    h["category_id"] = rng.integers(0, n_cats, n)
    h["action"] = rng.integers(0, 4, n)
    return h


def _ids(rng: np.random.Generator, shape: tuple[int, ...], buckets: int, mask: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(rng.integers(1, buckets, shape)) * mask


def random_batch(
    cfg: ModelConfig, rng: np.random.Generator, users: int = 3, cands: int = 7, full_len: int = 9
) -> Batch:
    """A Batch with random ids and ragged masks: row 0 of every sequence is fully padded."""
    s, k = cfg.short_len, cfg.long_k

    def mask(rows: int, width: int) -> torch.Tensor:
        lengths = rng.integers(1, width + 1, rows)
        lengths[0] = 0
        return torch.from_numpy(np.arange(width)[None, :] < lengths[:, None])

    user_of = np.sort(rng.integers(0, users, cands))
    short_mask = mask(users, s)
    batch = Batch(
        cand_item=torch.from_numpy(rng.integers(1, cfg.item_buckets, cands)),
        cand_cat=torch.from_numpy(rng.integers(1, cfg.category_buckets, cands)),
        user_of=torch.from_numpy(user_of),
        now=torch.full((users,), NOW, dtype=torch.int64),
        short_item=_ids(rng, (users, s), cfg.item_buckets, short_mask),
        short_cat=_ids(rng, (users, s), cfg.category_buckets, short_mask),
        short_action=_ids(rng, (users, s), cfg.action_buckets, short_mask),
        short_mask=short_mask,
    )
    if cfg.gsu != "none":
        m = mask(cands, k)
        batch.long_item = _ids(rng, (cands, k), cfg.item_buckets, m)
        batch.long_cat = _ids(rng, (cands, k), cfg.category_buckets, m)
        batch.long_action = _ids(rng, (cands, k), cfg.action_buckets, m)
        batch.long_dt = _ids(rng, (cands, k), cfg.time_buckets, m)
        batch.long_mask = m
        batch.long_tag = _ids(rng, (cands, k), 7, m)
        if cfg.vocabulary:
            batch.long_rel = torch.from_numpy(rng.uniform(-1, 1, (cands, k)).astype(np.float32)) * m
    if cfg.stats:
        batch.cand_stats = torch.from_numpy(rng.normal(size=(cands, cfg.n_stats)).astype(np.float32))
    if cfg.full_attention:
        m = mask(users, full_len)
        batch.full_item = _ids(rng, (users, full_len), cfg.item_buckets, m)
        batch.full_cat = _ids(rng, (users, full_len), cfg.category_buckets, m)
        batch.full_action = _ids(rng, (users, full_len), cfg.action_buckets, m)
        batch.full_mask = m
    return batch


SERVICE_SMALL: dict[str, Any] = {"n_clusters": 16, "nprobe": 4, "long_k": 16, "short_len": 20, "item_hits": 4,
                                  "vector_dim": 8, "item_buckets": 4096, "category_buckets": 256}  # fmt: skip
SERVICE_ITEMS, SERVICE_CATEGORIES = 2_000, 20  # the id ranges the service tests use


def service_lookups(seed: int = 0) -> tuple[Lookups, ItemIndex]:
    """Item tables over items < SERVICE_ITEMS and categories < SERVICE_CATEGORIES (random histories)."""
    rng = np.random.default_rng(seed)
    histories = [history(rng, 300, SERVICE_ITEMS, SERVICE_CATEGORIES) for _ in range(40)]
    return lookups_for(histories, SERVICE_SMALL["vector_dim"], SERVICE_SMALL["n_clusters"], seed)


def make_artifact(directory: Path, variant: str = "sim_can", seed: int = 0, **overrides: Any) -> Path:
    """A small, untrained artifact (real weights, real item tables and Faiss index where the variant has them) for
    service tests; statistics standardised on random histories."""
    from models.artifacts import save
    from models.features import build_batch
    from models.ranker import RankerModel

    torch.manual_seed(seed)
    config = ModelConfig.for_variant(variant, **{**SERVICE_SMALL, **overrides})
    lookups, index = service_lookups(seed) if config.vocabulary else (NO_LOOKUPS, None)
    if config.vocabulary:
        assert lookups.items is not None and lookups.categories is not None
        config = config.replace(item_buckets=lookups.items.vocab.size, category_buckets=lookups.categories.size)
    model = RankerModel(config).eval()
    if model.stats is not None:
        rng = np.random.default_rng(seed)
        h = history(rng, 500, SERVICE_ITEMS, SERVICE_CATEGORIES)
        items, cats = rng.integers(0, SERVICE_ITEMS, 64), rng.integers(0, SERVICE_CATEGORIES, 64)
        from retrieval.gsu_hybrid import build_gsu

        gsu = build_gsu(config.gsu, config.long_k, index, config.nprobe, config.item_hits)
        batch = build_batch([h], np.zeros(64, np.int64), items, cats, NOW, config, gsu, lookups=lookups,
                            user_ids=["fit"])  # fmt: skip
        assert batch.cand_stats is not None
        model.stats.fit(batch.cand_stats)
    keep_index = index if config.gsu in ("soft", "hybrid") else None
    save(model, config, directory, metrics={"note": "untrained test model"}, item_index=keep_index, lookups=lookups)
    return directory
