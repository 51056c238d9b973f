"""`longrank simulate --seeds 5 --json --plot PNG`: the exploration simulator (models/simulator.py).

Prints with --json ``{"strategies": {"<name>": {"clicks_mean", "clicks_std", "clicks", "lift_vs_greedy",
"headroom_share_mean", "headroom_share_std", "headroom_share_se", "headroom_share",
"slates_changed_share"}}, "oracle": {"clicks_mean",
"clicks_std"}, "headroom": {"clicks_mean", "clicks_std", "share_of_greedy"}, "age_ts_vs": {"<name>":
{"diff_mean", "diff_se", "z"}}, "best", "seeds", "config", "seconds"}`` (else a table). The headroom is the
oracle's clicks minus greedy's; a strategy's share is (its clicks − greedy's) ÷ headroom per seed; ``age_ts_vs``
pairs AGE-TS's share with each other strategy's seed by seed (common random numbers), and the difference of
age_ts and age_ts_no_dgu is the DGU ablation. Standard deviations are over seeds (ddof = 1); SE = std / √seeds.

``--ope-check STRATEGY`` logs that strategy with Monte-Carlo propensities on ``--first-seed`` and prints IPW,
SNIPW and DR estimates of greedy's click rate per slot beside its true rate (models/sim_ope.py).

``--tune`` instead runs every exploring strategy's knob over its grid (models.simulator.KNOBS) on the seeds given
(use tuning seeds, e.g. ``--first-seed 100 --seeds 2``) and prints each value's share of the headroom.

--plot writes the cumulative clicks minus greedy's, and the share of the headroom captured, over rounds (mean over
seeds). Jobs run in ``--workers`` spawned processes (one torch thread each).
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = "Exploration simulator: cumulative clicks of several strategies."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (first-seed .. first-seed+N-1)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed (reported: 0; tuning: 100)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per run (default: SimConfig.rounds)")
    parser.add_argument("--lam", type=float, default=None, help="AGE-TS λ (default: SimConfig.lam)")
    parser.add_argument("--lam-ucb", type=float, default=None, help="AGE-UCB λ (default: SimConfig.lam_ucb)")
    parser.add_argument("--dropout", type=float, default=None, help="AGE MC-dropout rate (default: SimConfig)")
    parser.add_argument("--budget", type=int, default=None, help="explored items allowed inside top_n")
    parser.add_argument("--max-impressions", type=int, default=None, help="only items with fewer are explored")
    parser.add_argument("--new-init", choices=("zero", "mean"), default=None, help="a new item's embedding row")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="any other SimConfig field, e.g. --set lifetime=200 (repeatable)")
    parser.add_argument("--strategies", default=None, help="comma-separated subset of the strategies")
    parser.add_argument("--tune", action="store_true", help="sweep each strategy's knob on these (tuning) seeds")
    parser.add_argument("--ope-check", default=None, metavar="STRATEGY",
                        help="log STRATEGY (e.g. age_ts) with propensities on --first-seed and estimate greedy's click "
                             "rate off-policy (IPW, SNIPW, DR) against its true rate (models/sim_ope.py)")
    parser.add_argument("--draws", type=int, default=16, help="--ope-check: Monte-Carlo propensity draws M")
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", default=None, help="write the cumulative-clicks PNG here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    from dataclasses import fields

    from models.simulator import SimConfig

    names = ("rounds", "lam", "lam_ucb", "dropout", "budget", "max_impressions", "new_init")
    out: dict[str, object] = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    types = {f.name: f.type for f in fields(SimConfig)}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or key not in types:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {sorted(types)}")
        kind = types[key]
        out[key] = value if kind == "str" else (int(value) if kind == "int" else float(value))
    return out


def run(args: argparse.Namespace) -> int:
    from models.simulator import KNOBS, STRATEGIES, SimConfig, plot, simulate, tune

    if args.seeds < 1 or args.workers < 1:
        print(f"longrank simulate: --seeds={args.seeds} and --workers={args.workers} must be >= 1", file=sys.stderr)
        return 2
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    try:
        cfg = SimConfig(**_overrides(args))  # type: ignore[arg-type]
        if args.ope_check:
            from models.sim_ope import ope_check

            print(json.dumps(ope_check(cfg, args.first_seed, args.ope_check, draws=args.draws)))
            return 0
        if args.tune:
            strategies = tuple(args.strategies.split(",")) if args.strategies else tuple(KNOBS)
            unknown = sorted(set(strategies) - set(KNOBS))
            if unknown:
                raise ValueError(f"--tune: strategies {unknown} have no knob; tunable: {list(KNOBS)}")
            print(json.dumps(tune(cfg, seeds, strategies, workers=args.workers, progress=not args.quiet)))
            return 0
        strategies = tuple(args.strategies.split(",")) if args.strategies else STRATEGIES
        result = simulate(cfg, seeds, strategies, workers=args.workers, progress=not args.quiet)
    except ValueError as exc:
        print(f"longrank simulate: {exc}", file=sys.stderr)
        return 2
    if args.plot:
        plot(result, args.plot)
    result.pop("curves")
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{'strategy':<15}{'clicks mean':>12}{'std':>8}{'vs greedy':>11}{'headroom share':>16}{'± std':>8}")
    for name, row in result["strategies"].items():
        lift, share, spread = row.get("lift_vs_greedy"), row.get("headroom_share_mean"), row.get("headroom_share_std")
        print(f"{name:<15}{row['clicks_mean']:>12.1f}{row['clicks_std']:>8.1f}"
              f"{'' if lift is None else f'{lift:+.1%}':>11}{'' if share is None else f'{share:+.1%}':>16}"
              f"{'' if spread is None else f'{spread:.1%}':>8}")  # fmt: skip
    oracle = result["oracle"]
    print(f"{'(oracle)':<15}{oracle['clicks_mean']:>12.1f}{oracle['clicks_std']:>8.1f}")
    return 0
