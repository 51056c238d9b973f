"""Helpers for tests (here and in training/serving tests): tiny configs, random histories, random Batches.

Real tensors at small sizes, so a test of a whole RankerModel runs in milliseconds. Not used by the service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.config import ModelConfig
from models.features import Batch
from retrieval.events import BEHAVIOR_DTYPE, Behaviors

VARIANTS = ("dnn", "din", "din_long", "sim_hard", "sim_soft", "can", "sim_can")
NOW = 1_700_000_000


def tiny(variant: str, **overrides: Any) -> ModelConfig:
    values: dict[str, Any] = {
        "item_buckets": 512,
        "category_buckets": 32,
        "short_len": 6,
        "long_k": 5,
        "heads": 2,
        "head_dim": 4,
        "attention_hidden": (8, 4),
        "mlp_dims": (16, 8),
        "gsu_hidden": (8,),
        "n_clusters": 8,
        "nprobe": 8,
        "full_chunk_elements": 16,  # forces din_long to chunk its candidates even in tiny tests
    }
    values.update(overrides)
    return ModelConfig.for_variant(variant, **values)


def history(rng: np.random.Generator, n: int, n_items: int = 60, n_cats: int = 4) -> Behaviors:
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
    if cfg.full_attention:
        m = mask(users, full_len)
        batch.full_item = _ids(rng, (users, full_len), cfg.item_buckets, m)
        batch.full_cat = _ids(rng, (users, full_len), cfg.category_buckets, m)
        batch.full_action = _ids(rng, (users, full_len), cfg.action_buckets, m)
        batch.full_mask = m
    return batch


SERVICE_SMALL: dict[str, Any] = {
    "item_buckets": 4096, "category_buckets": 256, "n_clusters": 16, "nprobe": 4, "long_k": 16, "short_len": 20,
}


def make_artifact(directory: Path, variant: str = "sim_can", seed: int = 0, **overrides: Any) -> Path:
    """A small, untrained artifact (real weights, real Faiss index for soft search) for service tests."""
    from models.artifacts import save
    from models.ranker import RankerModel
    from retrieval.item_index import ItemIndex

    torch.manual_seed(seed)
    config = ModelConfig.for_variant(variant, **{**SERVICE_SMALL, **overrides})
    model = RankerModel(config).eval()
    index = None
    if config.gsu == "soft":
        keys, queries = model.gsu_tables()
        index = ItemIndex.build(keys, queries, n_clusters=config.n_clusters, seed=seed)
    save(model, config, directory, metrics={"note": "untrained test model"}, item_index=index)
    return directory
