"""`longrank simulate --seeds 5 --json --plot PNG`: the exploration simulator (models/simulator.py).

Prints ``{"strategies": {"<name>": {"clicks_mean", "clicks_std", "clicks", "lift_vs_greedy",
"lift_vs_greedy_per_seed"}}, "oracle": {"clicks_mean", "clicks_std"}, "seeds", "config", "seconds"}`` with --json
(else a table); --plot writes cumulative clicks relative to greedy over rounds (mean ± std over seeds). Seeds run
in ``--workers`` spawned processes (one torch thread each). The environment and its fairness rules are described
in models/simulator.py's docstring.
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = "Exploration simulator: cumulative clicks of several strategies."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (0..N-1)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per run (default: SimConfig.rounds)")
    parser.add_argument("--lam", type=float, default=None, help="AGE-TS λ (default: SimConfig.lam)")
    parser.add_argument("--lam-ucb", type=float, default=None, help="AGE-UCB λ (default: SimConfig.lam_ucb)")
    parser.add_argument("--dropout", type=float, default=None, help="AGE MC-dropout rate (default: SimConfig)")
    parser.add_argument("--budget", type=int, default=None, help="explored items allowed inside top_n")
    parser.add_argument("--max-impressions", type=int, default=None, help="only items with fewer are explored")
    parser.add_argument("--new-init", choices=("zero", "mean"), default=None, help="a new item's embedding row")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run are first-seed .. first-seed+N-1")
    parser.add_argument("--strategies", default=None, help="comma-separated subset of the strategies")
    parser.add_argument("--workers", type=int, default=2, help="processes (seeds run in parallel)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", default=None, help="write the cumulative-clicks PNG here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from models.simulator import STRATEGIES, SimConfig, plot, simulate

    if args.seeds < 1 or args.workers < 1:
        print(f"longrank simulate: --seeds={args.seeds} and --workers={args.workers} must be >= 1", file=sys.stderr)
        return 2
    names = ("rounds", "lam", "lam_ucb", "dropout", "budget", "max_impressions", "new_init")
    overrides = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    strategies = tuple(args.strategies.split(",")) if args.strategies else STRATEGIES
    try:
        cfg = SimConfig(**overrides)
        seeds = list(range(args.first_seed, args.first_seed + args.seeds))
        result = simulate(cfg, seeds, strategies, workers=args.workers, progress=not args.quiet)
    except ValueError as exc:
        print(f"longrank simulate: {exc}", file=sys.stderr)
        return 2
    if args.plot:
        plot(result, args.plot)
    result.pop("curves")
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'strategy':<16}{'clicks mean':>12}{'std':>8}{'vs greedy':>11}")
        for name, row in result["strategies"].items():
            lift = row.get("lift_vs_greedy")
            print(f"{name:<16}{row['clicks_mean']:>12.1f}{row['clicks_std']:>8.1f}"
                  f"{'' if lift is None else f'{lift:+.1%}':>11}")  # fmt: skip
        oracle = result["oracle"]
        print(f"{'(oracle)':<16}{oracle['clicks_mean']:>12.1f}{oracle['clicks_std']:>8.1f}")
    return 0
