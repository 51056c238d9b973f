"""`longrank bench {store,gsu,model,serve} [--json]`: each benchmark lives in bench/<name>.py with
``add_arguments(parser)`` and ``measure(args) -> dict``; this verb prints the dict as one JSON object."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from types import ModuleType

BENCHES = ("store", "gsu", "model", "serve")


def _load(name: str) -> ModuleType | None:
    """The bench module, or None when this build does not have it (other import errors propagate)."""
    module = f"bench.{name}"
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", required=True)
    for name in BENCHES:
        p = sub.add_parser(name)
        p.add_argument("--json", action="store_true", help="print one JSON object and nothing else on stdout")
        module = _load(name)
        if module is not None:
            module.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    module = _load(args.bench)
    if module is None:
        print(f"longrank bench {args.bench}: not available in this build yet", file=sys.stderr)
        return 2
    result = module.measure(args)
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
    return 0
