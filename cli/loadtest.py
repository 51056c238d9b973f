"""`longrank loadtest`: open-loop load at a constant arrival rate against `POST /v1/rank` (see loadtest/openloop.py).

One rate (``--rate R``) prints one JSON object with ``--json``; several (``--rates 10,25,50``) run in sequence and
print ``{"runs": [...], "sustained_rps": R}``: the highest rate whose 2xx p99 is <= 60 ms with >= 99.9% of its
requests answered 2xx (null when none is). ``--generator-cpus 1`` pins this process to those CPUs (as taskset
would), so that the generator keeps off the service's cores where the machine has cores to spare. ``--plot PNG``
writes the latency CDF (or, for a sweep, CDFs plus p50/p99 against rate).
Only loopback targets are accepted unless ``--allow-remote``. Imports no torch, faiss or web framework.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from loadtest.openloop import SUSTAINED_OK, SUSTAINED_P99_MS, LoadConfig, RunOutcome, run_load, sustained_rps, sweep
from loadtest.payloads import PayloadSpec

PROG = "longrank loadtest"


def _rates(text: str) -> list[float]:
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rates must be comma-separated numbers (got {text!r})") from None
    if not rates:
        raise argparse.ArgumentTypeError("--rates must list at least one rate")
    return rates


def _cpus(text: str) -> set[int]:
    try:
        cpus = {int(part) for part in text.split(",") if part.strip()}
    except ValueError:
        message = f"--generator-cpus must be comma-separated CPU numbers (got {text!r})"
        raise argparse.ArgumentTypeError(message) from None
    if not cpus or min(cpus) < 0:
        raise argparse.ArgumentTypeError(f"--generator-cpus must list CPU numbers >= 0 (got {text!r})")
    return cpus


def pin(cpus: set[int]) -> None:
    """Pin this process to ``cpus`` (os.sched_setaffinity); ValueError naming the flag when the machine refuses."""
    available = os.sched_getaffinity(0)
    if not cpus <= available:
        raise ValueError(f"--generator-cpus {sorted(cpus)}: this machine offers CPUs {sorted(available)}")
    os.sched_setaffinity(0, cpus)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="base URL of the service, e.g. http://127.0.0.1:8000")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--rate", type=float, help="requests per second (constant arrival rate)")
    which.add_argument("--rates", type=_rates, help="comma-separated rates to sweep in sequence, e.g. 10,25,50,100")
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds per rate (default 30)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds sent first and left out of the stats")
    parser.add_argument("--json", action="store_true", help="print one JSON object and nothing else on stdout")
    parser.add_argument("--plot", metavar="PNG", help="write a latency CDF (sweep: CDFs + p50/p99 vs rate)")
    parser.add_argument("--users", type=int, default=943, help="distinct user ids f'{prefix}{n}', n < users")
    parser.add_argument("--user-prefix", default="u", help='user id prefix (default "u"; "" for MovieLens ids)')
    parser.add_argument("--user-width", type=int, default=0, help="zero-pad user numbers to N digits (synthetic: 6)")
    parser.add_argument("--candidates", type=int, default=500, help="candidates per request (default 500)")
    parser.add_argument("--items", type=int, default=1682, help="candidate item ids are drawn from [0, items)")
    parser.add_argument("--categories", type=int, default=19, help="category ids are drawn from [0, categories)")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds from scheduled send to give up")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connection pool size")
    parser.add_argument("--seed", type=int, default=0, help="seed of the payload generator")
    parser.add_argument("--path", default="/v1/rank", help="request path (default /v1/rank)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a non-loopback target (only for hosts you are allowed to load)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--generator-cpus", type=_cpus, metavar="LIST",
                        help="pin the load generator to these CPUs, e.g. 3 or 2,3 (Linux; the service's cores stay "
                             "free for it)")


def _readable(summary: dict[str, object]) -> str:
    pct = "  ".join(f"{k.removesuffix('_ms')}={summary[k]}" for k in ("p50_ms", "p95_ms", "p99_ms", "p999_ms"))
    return (
        f"{summary['url']}: offered {summary['offered_rps']} rps, achieved {summary['achieved_rps']} rps over "
        f"{summary['duration_s']} s ({summary['requests']} requests, {summary['candidates']} candidates)\n"
        f"  2xx latency ms: {pct}\n"
        f"  errors {summary['errors']}  status {json.dumps(summary['status_counts'])}  "
        f"generator lag p99 {summary['generator_lag_p99_ms']} ms ({summary['late_sends']} late sends)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        if args.generator_cpus is not None:
            pin(args.generator_cpus)
        payload = PayloadSpec(users=args.users, candidates=args.candidates, items=args.items,
                              categories=args.categories, user_prefix=args.user_prefix, user_width=args.user_width,
                              seed=args.seed)
        config = LoadConfig(url=args.url, rate=args.rate if args.rate is not None else args.rates[0],
                            duration=args.duration, warmup=args.warmup, timeout=args.timeout,
                            connections=args.connections, path=args.path, payload=payload,
                            allow_remote=args.allow_remote)
        outcomes: list[RunOutcome]
        progress = False if args.no_progress else None
        if args.rates is not None:
            outcomes = sweep(config, args.rates, progress=progress)
        else:
            outcomes = [run_load(config, progress=progress)]
    except ValueError as exc:  # bad flags, refused target (RemoteTargetError), bad rate in --rates
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if args.plot:
        from loadtest.plot import plot_cdf, plot_sweep

        if args.rates is not None:
            plot_sweep(outcomes, args.plot)
        else:
            plot_cdf(outcomes[0], args.plot)
    summaries = [o.summary for o in outcomes]
    if args.json:
        print(json.dumps({"runs": summaries, "sustained_rps": sustained_rps(summaries)} if args.rates is not None
                         else summaries[0]))  # fmt: skip
    else:
        print("\n".join(_readable(s) for s in summaries))
        if args.rates is not None:
            print(f"sustained_rps: {sustained_rps(summaries)} (the highest rate with 2xx p99 <= {SUSTAINED_P99_MS:g} "
                  f"ms and >= {SUSTAINED_OK:.1%} 2xx)")
        if args.plot:
            print(f"plot written to {args.plot}")
    return 0
