"""`longrank experiment ml100k|synthetic [--interest items] --seeds N [--json]`: every variant × N seeds on one
split, beside the strong simple baselines; one JSON object ({"models": {name: {auc_mean, auc_std, gauc_mean,
gauc_std, logloss_mean, seconds_mean}}, "baselines": {lr, gbdt, gbdt_graph: ...}, "oracle_auc", "ceiling_auc"?,
"gsu_recall", "dataset"}) with --json, a readable table otherwise. Progress goes to stderr."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cli.train import parse_overrides
from models.config import VARIANTS

HELP = "Train and evaluate every variant over several seeds; print the results table."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=("ml100k", "synthetic"))
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object and nothing else on stdout")
    parser.add_argument("--data", type=Path, default=None, help="dataset directory (default: built under var/)")
    parser.add_argument("--models", default=",".join(VARIANTS), help="comma-separated variants (default: all)")
    parser.add_argument("--interest", choices=("categories", "items"), default="categories",
                        help="synthetic: interest shown by categories (default) or by re-engaged items")
    parser.add_argument("--users", type=int, default=None, help="synthetic: users (categories 2000, items 1000)")
    parser.add_argument("--min-length", type=int, default=None,
                        help="synthetic: shortest history (categories 2000, items 3000)")
    parser.add_argument("--length", type=int, default=None, help="synthetic: longest history (categories 10000, "
                        "items 8000)")
    parser.add_argument("--no-baselines", action="store_true", help="skip the LR / GBDT baselines")
    parser.add_argument("--workers", type=int, default=2, help="training processes in parallel (default 2)")
    parser.add_argument("--cache-dir", type=Path, default=Path("var") / "datasets", help="where datasets are built")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs per run (default: per dataset)")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--max-len", type=int, default=None, help="keep each history's last N behaviours")
    parser.add_argument("--patience", type=int, default=None)
    parser.add_argument(
        "--din-long-max-len", type=int, default=None,
        help="din_long only: attend over the last N behaviours (default: all for ml100k, 1000 for synthetic)",
    )  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON", help="ModelConfig override")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def run(args: argparse.Namespace) -> int:
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    unknown = [m for m in models if m not in VARIANTS]
    if unknown or not models:
        print(f"longrank experiment: --models {args.models!r}: each must be one of {', '.join(VARIANTS)}",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.data is not None and not args.data.is_dir():
        print(f"longrank experiment: --data {args.data}: not a directory", file=sys.stderr)
        return 2
    from models.experiment import ExperimentSpec, format_table, run_experiment

    train: dict[str, object] = {}
    for name in ("epochs", "lr", "batch_size", "max_len", "patience"):
        if getattr(args, name) is not None:
            train[name] = getattr(args, name)
    din_long_max_len = args.din_long_max_len
    if din_long_max_len is None and args.dataset == "synthetic":
        din_long_max_len = 1000
    try:
        if args.set:
            train["overrides"] = parse_overrides(args.set)
        spec = ExperimentSpec(
            dataset=args.dataset, seeds=args.seeds, data_dir=args.data, models=models, interest=args.interest,
            users=args.users, min_length=args.min_length, length=args.length, baselines=not args.no_baselines,
            workers=args.workers, cache_dir=args.cache_dir,
            train=train, progress=not args.quiet, din_long_max_len=din_long_max_len,
        )  # fmt: skip
        result = run_experiment(spec)
    except (ValueError, FileNotFoundError) as exc:
        print(f"longrank experiment: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else format_table(result))
    return 0
