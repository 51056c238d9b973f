"""`longrank bench gsu`: soft, hard and exact GSU on one synthetic lifelong user (DESIGN §6 fields).

The data has the structure soft search relies on: every category has a unit centroid and its items' vectors are
the centroid plus noise; a user's history comes mostly from a few interest categories (Zipf over categories and
over items, so items repeat) with a uniform long tail; half the candidates come from the user's categories, half
from anywhere. Queries are the keys plus a little noise (the model's W_a and W_b differ). The ItemIndex is built
once (not timed); then each search runs ``--repeat`` times on the same request and the medians are reported.

``--data DIR`` adds ``data_recall``: on a dataset's test samples, how often each search kind (hard, soft, hybrid;
fitted as a training run would fit them) retrieves the re-engaged target item and the generator's evidence.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from retrieval.events import BEHAVIOR_DTYPE, MIN_TS, Behaviors
from retrieval.gsu import DEFAULT_NPROBE, ExactSearch, HardSearch, Retrieved, SoftSearch, recall_at_k
from retrieval.hashing import bucket
from retrieval.item_index import DEFAULT_N_CLUSTERS, ItemIndex


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--length", type=int, default=54_000, help="behaviours in the user's history (L)")
    parser.add_argument("--candidates", type=int, default=500, help="candidates per request (C)")
    parser.add_argument("--k", type=int, default=64, help="behaviours retrieved per candidate (K)")
    parser.add_argument("--dim", type=int, default=16, help="GSU embedding size (d)")
    parser.add_argument("--clusters", type=int, default=DEFAULT_N_CLUSTERS, help="k-means clusters of the index")
    parser.add_argument("--nprobe", type=int, default=DEFAULT_NPROBE, help="clusters probed per candidate")
    parser.add_argument("--items", type=int, default=200_000, help="catalogue size")
    parser.add_argument("--categories", type=int, default=2_000, help="number of categories")
    parser.add_argument("--buckets", type=int, default=2**18, help="item hash buckets (embedding rows)")
    parser.add_argument("--spread", type=float, default=0.5, help="item noise around its category centroid (norm)")
    parser.add_argument("--kmeans", choices=("spherical", "plain"), default="spherical", help="k-means variant")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs of each search")
    parser.add_argument("--threads", type=int, default=1, help="Faiss threads (1 = one service inference call)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", help="also a dataset directory (e.g. `longrank data synthetic --interest items`): "
                                       "recall of each search kind on its test samples (models.gsu_recall)")


@dataclass(frozen=True)
class Workload:
    """One synthetic request: the item index, a user's history and the candidates."""

    index: ItemIndex
    history: Behaviors
    cand_items: npt.NDArray[np.int64]
    cand_cats: npt.NDArray[np.int64]


def _check(args: argparse.Namespace) -> None:
    rules: list[tuple[str, int, int]] = [
        ("length", args.length, 0),
        ("candidates", args.candidates, 1),
        ("k", args.k, 1),
        ("dim", args.dim, 1),
        ("clusters", args.clusters, 1),
        ("nprobe", args.nprobe, 1),
        ("items", args.items, 1),
        ("categories", args.categories, 1),
        ("buckets", args.buckets, 2),
        ("repeat", args.repeat, 1),
        ("threads", args.threads, 1),
    ]
    for name, value, low in rules:
        if value < low:
            raise SystemExit(f"longrank bench gsu: --{name}={value} must be >= {low}")
    if args.nprobe > args.clusters:
        raise SystemExit(f"longrank bench gsu: --nprobe={args.nprobe} must be <= --clusters={args.clusters}")
    if args.data and not (Path(args.data) / "meta.json").is_file():
        raise SystemExit(f"longrank bench gsu: --data {args.data} is not a dataset directory (no meta.json)")
    if args.clusters >= args.buckets:
        raise SystemExit(f"longrank bench gsu: --clusters={args.clusters} must be < --buckets={args.buckets}")


def _zipf(rng: np.random.Generator, n: int, size: int, exponent: float = 1.1) -> npt.NDArray[np.int64]:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return rng.choice(n, size=size, p=weights / weights.sum()).astype(np.int64)


def make_workload(args: argparse.Namespace) -> Workload:
    """Catalogue embeddings with category structure, one lifelong user, C candidates (seeded)."""
    rng = np.random.default_rng(args.seed)
    d, n_items, n_cats = args.dim, args.items, args.categories
    cat_of_item = rng.integers(0, n_cats, size=n_items)
    centroids = rng.standard_normal((n_cats, d)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    noise = rng.standard_normal((n_items, d)).astype(np.float32) * (args.spread / np.sqrt(d))
    item_vec = centroids[cat_of_item] + noise
    keys = rng.standard_normal((args.buckets, d)).astype(np.float32) * (1.0 / np.sqrt(d))  # unseen buckets
    keys[bucket(np.arange(n_items), args.buckets)] = item_vec
    keys[0] = 0.0
    queries = keys + rng.standard_normal(keys.shape).astype(np.float32) * (0.2 / np.sqrt(d))
    spherical = args.kmeans == "spherical"
    index = ItemIndex.build(keys, queries, n_clusters=args.clusters, seed=args.seed, spherical=spherical)

    order = np.argsort(cat_of_item, kind="stable")
    starts = np.searchsorted(cat_of_item[order], np.arange(n_cats + 1))
    sizes = np.diff(starts)

    def items_of(cats: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """One item per requested category, Zipf-popular within the category (empty categories -> any item)."""
        out = rng.integers(0, n_items, size=len(cats))
        for cat in np.unique(cats).tolist():
            rows = np.flatnonzero(cats == cat)
            if sizes[cat]:
                out[rows] = order[starts[cat] + _zipf(rng, int(sizes[cat]), len(rows))]
        return out

    interests = rng.choice(n_cats, size=min(8, n_cats), replace=False)
    tail = rng.random(args.length) < 0.1
    favourite = interests[_zipf(rng, len(interests), args.length)]
    hist_cats = np.where(tail, rng.integers(0, n_cats, size=args.length), favourite)
    hist_items = items_of(hist_cats)
    history = np.empty(args.length, dtype=BEHAVIOR_DTYPE)
    history["ts"] = MIN_TS + np.cumsum(rng.integers(1, 3_600, size=args.length))
    history["item_id"] = hist_items
    history["category_id"] = cat_of_item[hist_items]
    history["action"] = rng.integers(0, 4, size=args.length)

    from_user = rng.random(args.candidates) < 0.5
    cand_cats = np.where(from_user, interests[rng.integers(0, len(interests), size=args.candidates)], 0)
    cand_items = np.where(from_user, items_of(cand_cats), rng.integers(0, n_items, size=args.candidates))
    return Workload(index, history, cand_items.astype(np.int64), cat_of_item[cand_items].astype(np.int64))


def _p50_ms(fn: Callable[[], Retrieved], repeat: int) -> tuple[float, Retrieved]:
    result = fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3), result


def measure(args: argparse.Namespace) -> dict[str, Any]:
    _check(args)
    faiss.omp_set_num_threads(args.threads)
    work = make_workload(args)
    exact = ExactSearch(work.index, k=args.k)
    soft = SoftSearch(work.index, k=args.k, nprobe=args.nprobe)
    hard = HardSearch(k=args.k)
    exact_ms, exact_res = _p50_ms(lambda: exact.search(work.history, work.cand_items, work.cand_cats), args.repeat)
    soft_ms, soft_res = _p50_ms(lambda: soft.search(work.history, work.cand_items, work.cand_cats), args.repeat)
    hard_ms, _ = _p50_ms(lambda: hard.search(work.history, work.cand_items, work.cand_cats), args.repeat)
    return {
        "exact_p50_ms": round(exact_ms, 3),
        "soft_p50_ms": round(soft_ms, 3),
        "hard_p50_ms": round(hard_ms, 3),
        "recall_at_k": round(recall_at_k(soft_res, exact_res), 4),
        "speedup_soft_vs_exact": round(exact_ms / soft_ms, 2) if soft_ms > 0 else None,
        "length": args.length,
        "candidates": args.candidates,
        "k": args.k,
        "dim": args.dim,
        "clusters": args.clusters,
        "nprobe": args.nprobe,
        **({"data_recall": data_recall(args.data)} if args.data else {}),
    }


def data_recall(data_dir: str) -> dict[str, Any]:
    """The hard, soft and hybrid searches' recall on a dataset's test samples: of the re-engaged target item
    (``target_recall``) and, where the generator wrote its ground truth, of the evidence (``evidence_recall``)."""
    from models.data.samples import load_samples
    from models.experiment import recall_by_search

    path = Path(data_dir)
    return {"data": str(path), **recall_by_search(load_samples(path), path)}
