"""`longrank bench model`: the cost of scoring one request with the recommended model, split into its stages and
set against the hardware floor of its forward; and against full attention over the whole history.

The request (bench/workload.py): one user with ``--length`` behaviours (default 54,000; ``--history items``, the
realistic kind, or ``uniform``, the worst case for per-distinct-item work), ``--candidates`` candidates (default 500)
over 20 categories, item tables and the item index fitted on a few users' histories. The model is ``sim_can`` (DIN
short branch + ESU over the hybrid GSU + CAN + history statistics, exact item vocabulary) with random weights: the
cost of a forward does not depend on their values. One torch/Faiss thread (``--threads``), like one service call.

Stages, each timed on its own (p50 over ``--repeat`` rounds; every round runs every stage once, in turn, so that
load that comes and goes during the run weighs on all of them alike):

- ``gsu_ms``: the hybrid search (``gsu.search``: the target item's own behaviours ∪ soft search ∪ latest of the
  category); ``gsu_hard_ms``: the hard (category) search alone;
- ``stats_ms``: the target-aware statistics of the whole history (retrieval.history_stats);
- ``build_ms``: the feature building given the search result and the statistics (``build_batch(...,
  retrieved=, stats=)``: vocabulary rows, time buckets, search tags, relevance, tensors); ``build_ms_hard``: the
  same for the hard-search variant (``sim_can`` with ``gsu=hard``, its own GSU result);
- ``forward_only_p50_ms``: ``RankerModel.forward`` on the built batch under ``torch.inference_mode``;
- ``forward_p50_ms``: one model request as the pipeline runs it — the search, then ``models.ranker.score``
  (statistics, features, forward, sigmoid), both reading one HistoryView of the history (what they both derive
  from it is computed once); the stages above each start from the plain array;
- ``stats_search_share`` = (stats_ms + gsu_ms) ÷ forward_p50_ms (issue 9: ≤ 0.25).

The floor: ``flops`` is what torch.utils.flop_counter.FlopCounterMode counts in one forward (the matrix products;
elementwise work counts nothing), ``matmul_gflops`` the rate of a 512×512 fp32 matmul on one thread, timed in the
same rounds; ``floor_ms`` = flops ÷ that rate — the forward's time if every counted FLOP ran at large-matmul speed
and nothing else cost anything — and ``floor_ratio`` = forward_only_p50_ms ÷ floor_ms (goal ≤ 2).

- ``explore_p50_ms``: the same request ranked with exploration as served (models.bandits.served.age_slate with the
  served defaults of λ, dropout, budget and propensity draws M; ``--policy`` the served one unless given; slate
  ``--top-n``): search, features, then all of the exploration's model work, no impression limit (every candidate
  eligible, the worst case); ``explore_ratio`` = explore ÷ forward_p50_ms (lower is better; goal ≤ 2.5).
- ``full_attention_p50_ms``: din_long — features + target attention over all L behaviours for every candidate (the
  expensive reference, ``--full-repeat`` times); ``speedup_vs_full_attention`` = full ÷ forward_p50_ms (goal ≥ 20).

``load_avg_1m`` is the machine's one-minute load average at the end of the run (2 cores here: above ~1, another
process competed for the cores while this ran).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.workload import HISTORIES, sized_config

MATMUL_N = 512


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--length", type=int, default=54_000, help="behaviours in the user's history")
    parser.add_argument("--candidates", type=int, default=500, help="candidates per request")
    parser.add_argument("--history", choices=HISTORIES, default="items",
                        help="items: the item-interest generator's users (realistic, default); uniform: every "
                             "behaviour a random item of 1M (the worst case for per-distinct-item work)")
    parser.add_argument("--catalogue", type=int, default=50_000, help="items in the catalogue (--history items)")
    parser.add_argument("--k", type=int, default=64, help="behaviours the GSU retrieves per candidate")
    parser.add_argument("--repeat", type=int, default=30, help="timed rounds (every stage once per round)")
    parser.add_argument("--full-repeat", type=int, default=3, help="timed requests for the din_long reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch+faiss threads (1 = one service call)")
    parser.add_argument("--samples", type=int, default=20, help="AGE: MC-dropout samples N (UCB)")
    parser.add_argument("--top-n", type=int, default=10, help="explore: the slate size (exploration acts on it)")
    parser.add_argument("--policy", choices=("dropout_ts", "ts", "ucb"), default=None,
                        help="explore: the policy (default: the served LONGRANK_EXPLORE_POLICY)")


def _check(args: argparse.Namespace) -> None:
    limits = {"length": 1, "candidates": 1, "k": 1, "repeat": 1, "full_repeat": 1, "threads": 1, "samples": 1,
              "catalogue": 1051}  # fmt: skip
    for name, low in limits.items():
        value = getattr(args, name)
        if value < low:
            raise SystemExit(f"longrank bench model: --{name.replace('_', '-')}={value} must be >= {low}")


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


def _rounds_p50_ms(stages: dict[str, Callable[[], object]], repeat: int, warmup: int = 2) -> dict[str, float]:
    """p50 of every stage, timed in rounds (each round runs each stage once, in turn), so that load that comes and
    goes during the run weighs on every stage alike and their ratios stay fair."""
    from tqdm import tqdm

    for _ in range(warmup):
        for fn in stages.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in stages}
    for _ in tqdm(range(repeat), desc="bench model", leave=False):
        for name, fn in stages.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000.0)
    return {name: statistics.median(values) for name, values in times.items()}


def forward_flops(model: Any, batch: Any) -> int:
    """FLOPs of one forward as torch.utils.flop_counter counts them (matrix products; elementwise work is free)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(batch)
    return int(counter.get_total_flops())


def measure(args: argparse.Namespace) -> dict[str, Any]:
    _check(args)
    import torch

    from bench.workload import build
    from models.bandits.served import age_slate, policy_params
    from models.config import ModelConfig
    from models.features import build_batch
    from models.ranker import RankerModel, score
    from models.runtime import set_threads
    from retrieval.gsu import HardSearch
    from retrieval.gsu_hybrid import build_gsu
    from retrieval.history_stats import history_stats
    from retrieval.history_view import HistoryView
    from serving.settings import Settings

    set_threads(args.threads)
    torch.manual_seed(args.seed)
    base = ModelConfig.for_variant("sim_can", long_k=args.k)
    work = build(args.history, args.length, args.candidates, args.seed, base.vector_dim, base.n_clusters,
                 catalogue=args.catalogue)  # fmt: skip
    history, items, cats, now, lookups, index = work.history, work.items, work.cats, work.now, work.lookups, work.index
    assert lookups.items is not None and lookups.categories is not None
    ours = sized_config(base, work)
    hard = ours.replace(gsu="hard")
    model = RankerModel(ours).eval()
    gsu = build_gsu(ours.gsu, args.k, index, ours.nprobe, ours.item_hits)
    hard_gsu = HardSearch(args.k)
    owner = np.zeros(len(items), dtype=np.int64)
    assert gsu is not None

    found = gsu.search(history, items, cats)
    found_hard = hard_gsu.search(history, items, cats)
    stats = history_stats(history, items, cats, now, ours.stats_spec, lookups.items)
    batch = build_batch([history], owner, items, cats, now, ours, gsu, retrieved=[found], stats=stats,
                        lookups=lookups)  # fmt: skip

    def forward_only() -> object:
        with torch.inference_mode():
            return model(batch).logits

    def request() -> object:  # as serving.pipeline.Ranker.rank: the request's view, the search, then score()
        view = HistoryView(history)
        retrieved = gsu.search(view, items, cats)
        return score(model, view, items, cats, now, gsu, lookups=lookups, retrieved=retrieved)

    served = {k: f.default for k, f in Settings.model_fields.items() if k.startswith("explore_")}
    params = policy_params(args.policy or served["explore_policy"], served["explore_lambda"],
                           served["explore_dropout"], args.samples)  # fmt: skip

    def explore_request() -> object:
        view = HistoryView(history)
        retrieved = gsu.search(view, items, cats)
        explored = build_batch([view], owner, items, cats, now, ours, gsu, retrieved=[retrieved], lookups=lookups)
        return age_slate(model, explored, params, top_n=args.top_n, budget=served["explore_budget"], seed=0,
                         draws=served["explore_propensity_draws"])  # fmt: skip

    a, b = torch.randn(MATMUL_N, MATMUL_N), torch.randn(MATMUL_N, MATMUL_N)
    stages: dict[str, Callable[[], object]] = {
        "matmul": lambda: torch.mm(a, b),
        "gsu": lambda: gsu.search(history, items, cats),
        "gsu_hard": lambda: hard_gsu.search(history, items, cats),
        "stats": lambda: history_stats(history, items, cats, now, ours.stats_spec, lookups.items),
        "build": lambda: build_batch([history], owner, items, cats, now, ours, gsu, retrieved=[found], stats=stats,
                                     lookups=lookups),
        "build_hard": lambda: build_batch([history], owner, items, cats, now, hard, hard_gsu, retrieved=[found_hard],
                                          stats=stats, lookups=lookups),
        "forward_only": forward_only,
        "request": request,
        "explore": explore_request,
    }
    p50 = _rounds_p50_ms(stages, args.repeat)
    flops = forward_flops(model, batch)
    gflops = 2.0 * MATMUL_N**3 / (p50["matmul"] * 1e6)
    floor_ms = flops / (gflops * 1e6)

    ref = ModelConfig.for_variant("din_long")
    full_model = RankerModel(ref).eval()

    def full_request() -> object:
        with torch.inference_mode():
            return full_model(build_batch([history], owner, items, cats, now, ref)).logits

    full = _p50_ms(full_request, args.full_repeat, warmup=1, label="din_long over the full sequence")
    forward = p50["request"]
    return {
        "forward_p50_ms": round(forward, 3),
        "forward_only_p50_ms": round(p50["forward_only"], 3),
        "build_ms": round(p50["build"], 3),
        "build_ms_hard": round(p50["build_hard"], 3),
        "gsu_ms": round(p50["gsu"], 3),
        "gsu_hard_ms": round(p50["gsu_hard"], 3),
        "stats_ms": round(p50["stats"], 3),
        "stats_search_share": round((p50["stats"] + p50["gsu"]) / forward, 3),
        "flops": flops,
        "matmul_gflops": round(gflops, 2),
        "floor_ms": round(floor_ms, 3),
        "floor_ratio": round(p50["forward_only"] / floor_ms, 3),
        "explore_p50_ms": round(p50["explore"], 3),
        "explore_ratio": round(p50["explore"] / forward, 3),
        "full_attention_p50_ms": round(full, 3),
        "speedup_vs_full_attention": round(full / forward, 2),
        "history": args.history,
        "length": len(history),
        "distinct_items": work.distinct_items,
        "candidates": len(items),
        "k": args.k,
        "threads": args.threads,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
