"""`longrank simulate --seeds 5 --json --plot PNG`: the exploration simulator (models/simulator.py).

Prints ``{"strategies": {"<name>": {"clicks_mean", "clicks_std", "clicks", "lift_vs_greedy"}}, "seeds", "config",
"seconds"}`` with --json (else a table); --plot writes cumulative clicks over rounds (mean ± std over seeds).
Seeds run in ``--workers`` spawned processes (one torch thread each).
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = "Exploration simulator: cumulative clicks of several strategies."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (0..N-1)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per run (default: SimConfig.rounds)")
    parser.add_argument("--lam", type=float, default=None, help="AGE λ (default: SimConfig.lam)")
    parser.add_argument("--dropout", type=float, default=None, help="AGE MC-dropout rate (default: SimConfig)")
    parser.add_argument("--budget", type=int, default=None, help="explored items allowed inside top_n")
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
    overrides = {k: getattr(args, k) for k in ("rounds", "lam", "dropout", "budget") if getattr(args, k) is not None}
    strategies = tuple(args.strategies.split(",")) if args.strategies else STRATEGIES
    try:
        cfg = SimConfig(**overrides)
        result = simulate(cfg, list(range(args.seeds)), strategies, workers=args.workers, progress=not args.quiet)
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
    return 0
