"""`longrank data {ml100k,synthetic} --out DIR`: write a dataset directory (behaviors.parquet + meta.json).

ml100k reads MovieLens-100K from the installed recbole wheel; synthetic generates lifelong histories with a known
click probability: ``--interest categories`` (default; models/data/synthetic.py) hides the long-term interest in
categories, ``--interest items`` (models/data/synthetic_items.py) in re-engaged items and their taste neighbours,
with ``--alignment`` tying categories to taste (1) or not at all (0).
"""

from __future__ import annotations

import argparse
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")
    ml = sub.add_parser("ml100k", help="MovieLens-100K from the recbole wheel (pip install --no-deps recbole==1.2.1)")
    ml.add_argument("--out", required=True, help="output directory")
    syn = sub.add_parser("synthetic", help="seeded lifelong histories with ground-truth click probabilities")
    syn.add_argument("--out", required=True, help="output directory")
    syn.add_argument("--interest", choices=("categories", "items"), default="categories",
                     help="what the long-term interest is shown by (default categories)")
    syn.add_argument("--users", type=int, default=None, help="number of users (default: categories 2000, items 1000)")
    syn.add_argument("--length", type=int, default=None,
                     help="max behaviours per user (default: categories 54000, items 8000)")
    syn.add_argument("--min-length", type=int, default=None,
                     help="min behaviours per user (default: categories --length, items 3000); uniform between")
    syn.add_argument("--categories", type=int, default=100, help="number of categories (default 100)")
    syn.add_argument("--items", type=int, default=50_000, help="items: catalogue size (default 50000)")
    syn.add_argument("--alignment", type=float, default=0.3,
                     help="items: how much categories say about taste, 0 (nothing) to 1 (default 0.3)")
    syn.add_argument("--noise", type=float, default=0.3, help="items: per-sample logit noise std (default 0.3)")
    syn.add_argument("--samples-per-user", type=int, default=40, help="evaluation samples per user (default 40)")
    syn.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    syn.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        if args.source == "ml100k":
            from models.data.movielens import MovieLensMissing, write_ml100k

            try:
                meta = write_ml100k(args.out)
            except MovieLensMissing as exc:
                print(f"longrank data ml100k: {exc}", file=sys.stderr)
                return 2
        elif args.interest == "categories":
            from models.data.synthetic import SyntheticConfig, write_synthetic

            length = args.length or 54_000
            cfg = SyntheticConfig(
                users=args.users or 2_000,
                length=length,
                min_length=args.min_length,
                categories=args.categories,
                samples_per_user=args.samples_per_user,
                seed=args.seed,
            )
            meta = write_synthetic(args.out, cfg, progress=not args.no_progress)
        else:
            from models.data.synthetic_items import ItemInterestConfig, write_item_interest

            items = ItemInterestConfig(
                users=args.users or 1_000, length=args.length or 8_000, min_length=args.min_length or 3_000,
                items=args.items, categories=args.categories, alignment=args.alignment, noise=args.noise,
                samples_per_user=args.samples_per_user, seed=args.seed,
            )  # fmt: skip
            meta = write_item_interest(args.out, items, progress=not args.no_progress)
    except ValueError as exc:
        print(f"longrank data {args.source}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"longrank data {args.source}: cannot write {args.out}: {exc}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - started
    keys = ("n_users", "n_items", "n_categories", "n_behaviors", "n_samples", "oracle_auc_test", "ceiling_auc_test",
            "recent_only_auc_test")
    shown = "  ".join(f"{k}={meta[k]}" for k in keys if k in meta)
    print(f"wrote {args.out} ({meta['source']}) in {seconds:.1f} s: {shown}")
    return 0
