"""`longrank bench model`: the cost of scoring one request with the retrieval model against full attention.

One user with ``--length`` behaviours (default 54,000 over 1,000 categories, Zipf-like) and ``--candidates``
candidates (default 500, spread over at most 20 categories, as SIM reports for real requests). Timed per request:

- ``forward_p50_ms``: sim_can — ``models.features.build_batch`` (last S, hard GSU top-K per candidate, hashing,
  time buckets) + ``RankerModel.forward`` under ``torch.inference_mode``; ``forward_only_p50_ms`` without the
  batch building;
- ``full_attention_p50_ms``: din_long — the same, with target attention over all L behaviours for every
  candidate (the expensive reference; its candidates are processed in chunks to bound memory);
- ``speedup_vs_full_attention`` = full ÷ ours (higher is better; goal >= 20).
- ``explore_p50_ms``: the same request ranked with AGE exploration as served (models.bandits.served.age_slate with
  the served defaults of λ, dropout, budget and propensity draws M; ``--policy`` the served one unless given;
  slate ``--top-n``): build_batch, one forward with the candidate embeddings as a leaf, ONE batched backward for
  all C candidates, M draws of the MC-dropout samples (N = ``--samples`` per draw for UCB, one for TS) and ONE
  forward of every draw's rows that could enter the slate (no DGU, no impression limit: every candidate is
  eligible, the worst case), the M slates and the propensities; ``explore_ratio`` = explore ÷ forward (lower is
  better; goal <= 2.5).
Weights are random: the cost of a forward does not depend on their values.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--length", type=int, default=54_000, help="behaviours in the user's history")
    parser.add_argument("--candidates", type=int, default=500, help="candidates per request")
    parser.add_argument("--k", type=int, default=64, help="behaviours the GSU retrieves per candidate")
    parser.add_argument("--repeat", type=int, default=20, help="timed requests for the sim_can model")
    parser.add_argument("--full-repeat", type=int, default=3, help="timed requests for the din_long reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch+faiss threads (1 = one service call)")
    parser.add_argument("--samples", type=int, default=20, help="AGE: MC-dropout samples N (UCB)")
    parser.add_argument("--top-n", type=int, default=10, help="explore: the slate size (exploration acts on it)")
    parser.add_argument("--policy", choices=("dropout_ts", "ts", "ucb"), default=None,
                        help="explore: the policy (default: the served LONGRANK_EXPLORE_POLICY)")


def _check(args: argparse.Namespace) -> None:
    limits = {"length": 1, "candidates": 1, "k": 1, "repeat": 1, "full_repeat": 1, "threads": 1, "samples": 1}
    for name, low in limits.items():
        value = getattr(args, name)
        if value < low:
            raise SystemExit(f"longrank bench model: --{name.replace('_', '-')}={value} must be >= {low}")


def _history(rng: np.random.Generator, n: int, n_items: int = 1_000_000, n_cats: int = 1_000) -> Any:
    from retrieval.events import BEHAVIOR_DTYPE

    h = np.zeros(n, dtype=BEHAVIOR_DTYPE)
    h["ts"] = np.sort(rng.integers(1_600_000_000, 1_700_000_000, n))
    h["item_id"] = rng.integers(0, n_items, n)
    weights = 1.0 / np.arange(1, n_cats + 1)
    h["category_id"] = rng.choice(n_cats, size=n, p=weights / weights.sum())
    h["action"] = rng.integers(0, 4, n)
    return h


def _p50_ms(fn: Callable[[], object], repeat: int, warmup: int = 1, label: str | None = None) -> float:
    from tqdm import tqdm

    for _ in range(warmup):
        fn()
    times = []
    for _ in tqdm(range(repeat), desc=label, leave=False, disable=label is None):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def _p50_pair_ms(a: Callable[[], object], b: Callable[[], object], repeat: int, warmup: int = 1) -> tuple[float, float]:
    """p50 of two calls timed alternately (a, b, a, b, ...), so that a ratio of the two is not skewed by load that
    comes and goes during the run."""
    for _ in range(warmup):
        a()
        b()
    times_a: list[float] = []
    times_b: list[float] = []
    for _ in range(repeat):
        for fn, times in ((a, times_a), (b, times_b)):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times_a), statistics.median(times_b)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    _check(args)
    import torch

    from models.config import ModelConfig
    from models.features import build_batch
    from models.ranker import RankerModel
    from models.runtime import set_threads
    from models.testing import lookups_for
    from retrieval.gsu_hybrid import build_gsu

    set_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    history = _history(rng, args.length)
    cand_cats = rng.choice(np.unique(history["category_id"])[:200], size=min(20, args.candidates), replace=False)
    cats = rng.choice(cand_cats, size=args.candidates)
    items = rng.integers(0, 1_000_000, args.candidates)
    now = int(history["ts"][-1]) + 60
    owner = np.zeros(args.candidates, dtype=np.int64)

    lookups, index = lookups_for([history, _history(rng, args.length)], ModelConfig().vector_dim, n_clusters=256)
    assert lookups.items is not None and lookups.categories is not None
    ours = ModelConfig.for_variant("sim_can", long_k=args.k, item_buckets=lookups.items.vocab.size,
                                   category_buckets=lookups.categories.size, n_clusters=index.n_clusters)  # fmt: skip
    model = RankerModel(ours).eval()
    gsu = build_gsu(ours.gsu, args.k, index, ours.nprobe, ours.item_hits)

    def request() -> object:
        with torch.inference_mode():
            return model(build_batch([history], owner, items, cats, now, ours, gsu, lookups=lookups)).logits

    batch = build_batch([history], owner, items, cats, now, ours, gsu, lookups=lookups)

    def forward_only() -> object:
        with torch.inference_mode():
            return model(batch).logits

    from models.bandits.served import age_slate, policy_params
    from serving.settings import Settings

    served = {k: f.default for k, f in Settings.model_fields.items() if k.startswith("explore_")}
    params = policy_params(args.policy or served["explore_policy"], served["explore_lambda"],
                           served["explore_dropout"], args.samples)  # fmt: skip

    def explore_request() -> object:
        batch = build_batch([history], owner, items, cats, now, ours, gsu, lookups=lookups)
        return age_slate(model, batch, params, top_n=args.top_n, budget=served["explore_budget"], seed=0,
                         draws=served["explore_propensity_draws"])  # fmt: skip

    forward, explored = _p50_pair_ms(request, explore_request, args.repeat, warmup=2)
    only = _p50_ms(forward_only, args.repeat, warmup=2)

    ref = ModelConfig.for_variant("din_long")
    full_model = RankerModel(ref).eval()

    def full_request() -> object:
        with torch.inference_mode():
            return full_model(build_batch([history], owner, items, cats, now, ref)).logits

    full = _p50_ms(full_request, args.full_repeat, warmup=1, label="din_long over the full sequence")
    return {
        "forward_p50_ms": round(forward, 3),
        "forward_only_p50_ms": round(only, 3),
        "explore_p50_ms": round(explored, 3),
        "explore_ratio": round(explored / forward, 3),
        "full_attention_p50_ms": round(full, 3),
        "speedup_vs_full_attention": round(full / forward, 2),
    }
