"""`longrank VERB ...`: the command-line entry point.

Each verb lives in its own module under ``cli`` exposing ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``. Only the module of the verb being run is imported, so `longrank --help` and light verbs
stay fast and never pay for torch or faiss.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

VERBS: dict[str, str] = {
    "data": "Write a dataset directory (ml100k from the recbole wheel, or synthetic lifelong histories).",
    "ingest": "Bulk-load behaviour events from CSV or Parquet into a store.",
    "train": "Train one model variant on a dataset directory and write an artifact.",
    "experiment": "Train and evaluate every variant over several seeds; print the results table.",
    "serve": "Serve the HTTP API with uvicorn.",
    "demo": "Build the demo artifact and store from MovieLens-100K (when missing).",
    "bench": "Benchmarks: store, gsu, model, serve. Each prints one JSON object with --json.",
    "loadtest": "Open-loop load test at a constant arrival rate.",
    "simulate": "Exploration simulator: cumulative clicks of several strategies.",
    "export-log": "Export the exploration log (e.g. for Open Bandit Pipeline).",
    "ope": "Off-policy evaluation (IPW, SNIPW, DR) of another policy from an exported exploration log.",
}


def _module(verb: str) -> object:
    return importlib.import_module(f"cli.{verb.replace('-', '_')}")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    top = argparse.ArgumentParser(prog="longrank", description="Lifelong-behaviour CTR ranking service.")
    sub = top.add_subparsers(dest="verb", metavar="VERB")
    for verb, text in VERBS.items():
        sub.add_parser(verb, help=text, add_help=False)
    if not args or args[0] not in VERBS:
        top.parse_args(args)  # prints help or "invalid choice" and exits
        top.print_help()
        return 2
    verb = args[0]
    try:
        module = _module(verb)
    except ModuleNotFoundError as exc:
        if exc.name == f"cli.{verb.replace('-', '_')}":
            print(f"longrank {verb}: not available in this build yet", file=sys.stderr)
            return 2
        raise
    parser = argparse.ArgumentParser(prog=f"longrank {verb}", description=VERBS[verb])
    module.add_arguments(parser)  # type: ignore[attr-defined]
    parsed = parser.parse_args(args[1:])
    code: int = module.run(parsed)  # type: ignore[attr-defined]
    return code


if __name__ == "__main__":
    raise SystemExit(main())
