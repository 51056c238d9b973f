"""`longrank train --data DIR --model NAME --out DIR`: train one variant and write its artifact directory."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from models.config import VARIANTS  # light: no torch

HELP = "Train one model variant on a dataset directory and write an artifact."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="dataset directory written by `longrank data`")
    parser.add_argument("--model", required=True, help=f"variant: {', '.join(VARIANTS)}")
    parser.add_argument("--out", required=True, type=Path, help="artifact directory to write (replaced if present)")
    parser.add_argument("--epochs", type=int, default=4, help="maximum epochs (default 4)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    parser.add_argument("--lr-decay", type=float, default=0.8, help="learning-rate factor per epoch (default 0.8)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-len", type=int, default=None, help="keep each history's last N behaviours")
    parser.add_argument("--threads", type=int, default=1, help="torch and Faiss threads (default 1)")
    parser.add_argument("--patience", type=int, default=1, help="epochs without validation AUC gain before stopping")
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=JSON",
        help="override a ModelConfig field, e.g. --set short_len=100 --set 'mlp_dims=[128,64]' (repeatable)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print metrics.json's content as one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def parse_overrides(items: list[str]) -> dict[str, object]:
    """FIELD=JSON pairs -> dict; a bare word that is not JSON is taken as a string."""
    out: dict[str, object] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE")
        try:
            out[name] = json.loads(raw)
        except json.JSONDecodeError:
            out[name] = raw
    return out


def run(args: argparse.Namespace) -> int:
    if args.model not in VARIANTS:
        print(f"longrank train: --model {args.model!r} is unknown; expected one of: {', '.join(VARIANTS)}",
              file=sys.stderr)  # fmt: skip
        return 2
    if not args.data.is_dir():
        print(f"longrank train: --data {args.data}: not a directory (make one with `longrank data ...`)",
              file=sys.stderr)  # fmt: skip
        return 2
    from models.config import ConfigError
    from models.data.samples import DatasetError
    from models.train import TrainOptions, train_to_artifact

    try:
        options = TrainOptions(
            model=args.model, epochs=args.epochs, lr=args.lr, lr_decay=args.lr_decay, batch_size=args.batch_size,
            seed=args.seed, max_len=args.max_len, threads=args.threads, patience=args.patience,
            overrides=parse_overrides(args.set), progress=not args.quiet,
        )  # fmt: skip
        result = train_to_artifact(args.data, args.out, options)
    except (ValueError, ConfigError, DatasetError, FileNotFoundError) as exc:
        print(f"longrank train: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        test, valid = result["test"], result["valid"]
        print(
            f"{args.model}: test AUC {test['auc']:.4f}  GAUC {test['gauc']:.4f}  logloss {test['logloss']:.4f}  "
            f"(valid AUC {valid['auc']:.4f}, best epoch {result['best_epoch']}, {result['seconds']:.1f} s)  "
            f"artifact {args.out} version {result['version']}"
        )
    return 0
