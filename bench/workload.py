"""The request the model benchmarks score: one user's lifelong history, C candidates, and the item tables (exact
item vocabulary, co-occurrence graph and vectors, category vocabulary, the soft search's item index) fitted on the
histories of a few users, the way training fits them (models.train.fit_lookups).

Two kinds of history (``--history``):

- ``items`` (default, realistic): users of the item-interest lifelong generator (models.data.synthetic_items: a
  50,000-item catalogue in 100 categories, favourites re-engaged far back, sessions around them, short-term
  browsing, popular items), ``length`` behaviours each; a 54,000-behaviour user holds ~18,000 distinct items. The
  request's candidates come from 20 of the user's categories (SIM reports ~20 per real request): a quarter are
  items the user has behaved on (re-engagement candidates: item hits), the rest drawn from the catalogue by
  popularity, all known to the vocabulary.
- ``uniform`` (the worst case for the per-distinct-item work): every behaviour a uniform draw from 1,000,000 item
  ids over 1,000 Zipf-weighted categories (nearly every behaviour a distinct item: ~52,500 at 54,000), tables
  fitted on two such histories; candidates uniform over the id range (mostly unknown items) in 20 categories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

HISTORIES = ("items", "uniform")
CANDIDATE_CATEGORIES = 20
FIT_USERS = 4  # users whose histories the item tables are fitted on (the benchmark user is the first)


@dataclass(frozen=True)
class Workload:
    history: Any  # BEHAVIOR_DTYPE [L], oldest first
    items: npt.NDArray[np.int64]  # [C] candidate item ids
    cats: npt.NDArray[np.int64]  # [C] their categories
    now: int
    lookups: Any  # models.features.Lookups
    index: Any  # retrieval.item_index.ItemIndex

    @property
    def distinct_items(self) -> int:
        return len(np.unique(self.history["item_id"]))


def _as_behaviors(columns: dict[str, npt.NDArray[Any]]) -> Any:
    from retrieval.events import BEHAVIOR_DTYPE

    out = np.zeros(len(columns["ts"]), dtype=BEHAVIOR_DTYPE)
    for name in BEHAVIOR_DTYPE.names or ():
        out[name] = columns[name]
    return out


def _fit(histories: list[Any], vector_dim: int, n_clusters: int, seed: int) -> tuple[Any, Any]:
    from models.features import Lookups
    from retrieval.item_graph import fit_item_tables
    from retrieval.item_index import ItemIndex
    from retrieval.vocabulary import Vocabulary

    tables = fit_item_tables(histories, 2, dim=vector_dim, seed=seed)
    cats = np.concatenate([h["category_id"] for h in histories]).astype(np.int64)
    clusters = max(1, min(n_clusters, tables.vocab.size - 1, tables.vocab.n_known // 8 or 1))
    index = ItemIndex.build(tables.vectors, n_clusters=clusters, seed=seed, vocab=tables.vocab)
    return Lookups(tables, Vocabulary.fit(cats, overflow=16)), index


def _items_workload(length: int, candidates: int, seed: int, vector_dim: int, n_clusters: int,
                    catalogue_size: int) -> Workload:  # fmt: skip
    from models.data.synthetic_items import ItemInterestConfig, generate_user, make_catalogue

    cfg = ItemInterestConfig(users=FIT_USERS, length=length, min_length=length, items=catalogue_size, seed=seed)
    catalogue = make_catalogue(cfg)
    histories = [_as_behaviors(generate_user(cfg, catalogue, u).behaviors) for u in range(FIT_USERS)]
    lookups, index = _fit(histories, vector_dim, n_clusters, seed)
    history = histories[0]
    rng = np.random.default_rng([seed, 2])
    seen_cats, counts = np.unique(history["category_id"].astype(np.int64), return_counts=True)
    n_cats = min(CANDIDATE_CATEGORIES, len(seen_cats))
    chosen = rng.choice(seen_cats, size=n_cats, replace=False, p=counts / counts.sum())
    in_chosen = np.isin(catalogue.category, chosen)
    own = np.unique(history["item_id"][np.isin(history["category_id"], chosen)]).astype(np.int64)
    n_own = min(len(own), candidates // 4)
    picked = list(rng.choice(own, size=n_own, replace=False)) if n_own else []
    pool = np.flatnonzero(in_chosen & ~np.isin(catalogue.item_id, picked))
    weights = catalogue.popularity[pool] / catalogue.popularity[pool].sum()
    rest = rng.choice(pool, size=min(candidates - n_own, len(pool)), replace=False, p=weights)
    items = np.concatenate([np.asarray(picked, dtype=np.int64), catalogue.item_id[rest]])
    rows = np.searchsorted(catalogue.item_id, items)
    order = rng.permutation(len(items))
    return Workload(history, items[order], catalogue.category[rows][order].astype(np.int64),
                    int(history["ts"][-1]) + 60, lookups, index)  # fmt: skip


def _uniform_history(rng: np.random.Generator, n: int, n_items: int = 1_000_000, n_cats: int = 1_000) -> Any:
    from retrieval.events import BEHAVIOR_DTYPE

    h = np.zeros(n, dtype=BEHAVIOR_DTYPE)
    h["ts"] = np.sort(rng.integers(1_600_000_000, 1_700_000_000, n))
    h["item_id"] = rng.integers(0, n_items, n)
    weights = 1.0 / np.arange(1, n_cats + 1)
    h["category_id"] = rng.choice(n_cats, size=n, p=weights / weights.sum())
    h["action"] = rng.integers(0, 4, n)
    return h


def _uniform_workload(length: int, candidates: int, seed: int, vector_dim: int, n_clusters: int) -> Workload:
    rng = np.random.default_rng(seed)
    history = _uniform_history(rng, length)
    cand_cats = rng.choice(np.unique(history["category_id"])[:200], size=min(CANDIDATE_CATEGORIES, candidates),
                           replace=False)  # fmt: skip
    cats = rng.choice(cand_cats, size=candidates).astype(np.int64)
    items = rng.integers(0, 1_000_000, candidates).astype(np.int64)
    lookups, index = _fit([history, _uniform_history(rng, length)], vector_dim, n_clusters, seed)
    return Workload(history, items, cats, int(history["ts"][-1]) + 60, lookups, index)


def build(kind: str, length: int, candidates: int, seed: int, vector_dim: int, n_clusters: int, *,
          catalogue: int = 50_000) -> Workload:  # fmt: skip
    """The request of ``kind`` (module docstring); ``catalogue``: items in the item-interest generator's catalogue."""
    if kind == "items":
        return _items_workload(length, candidates, seed, vector_dim, n_clusters, catalogue)
    if kind == "uniform":
        return _uniform_workload(length, candidates, seed, vector_dim, n_clusters)
    raise ValueError(f"history={kind!r} must be one of {HISTORIES}")


def sized_config(base: Any, work: Workload) -> Any:
    """``base`` (a models.config.ModelConfig) with its tables sized to the workload's vocabularies and its index, as
    training sizes them (models.train.build_config)."""
    lookups, index = work.lookups, work.index
    return base.replace(item_buckets=lookups.items.vocab.size, category_buckets=lookups.categories.size,
                        n_clusters=index.n_clusters, nprobe=min(base.nprobe, index.n_clusters))  # fmt: skip
