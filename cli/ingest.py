"""`longrank ingest EVENTS --store URL`: bulk-load a CSV or Parquet file (or a dataset directory) into a store.

Thin wrapper over retrieval.ingest: picks the allowed actions (``--actions``, else the dataset's meta.json, else
the store's default), opens the store with them, prints bad rows and the final counts
(read = accepted + duplicates + skipped). Exit 0 on success, 1 when a bad row stopped it or the store failed,
2 for unusable input or arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace

from retrieval.errors import InvalidStoreURL, StoreError
from retrieval.ingest import DEFAULT_BATCH_SIZE, IngestAborted, IngestError, default_actions, ingest_file
from retrieval.store.base import StoreOptions
from retrieval.store.factory import open_store

DEFAULT_STORE_URL = "sqlite:///./var/behaviors.db"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("events", metavar="EVENTS", help="a .csv, .csv.gz or .parquet file, or a dataset directory")
    parser.add_argument(
        "--store",
        default=None,
        help=f"store URL (default: $LONGRANK_STORE_URL or {DEFAULT_STORE_URL})",
    )
    parser.add_argument("--skip-invalid", action="store_true", help="skip and count bad rows instead of stopping")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="events per store append")
    parser.add_argument(
        "--actions", default=None, help="allowed action values, e.g. 0,1,2,3 (default: the dataset's meta.json)"
    )
    parser.add_argument("--json", action="store_true", help="print the final counts as one JSON object")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _parse_actions(text: str) -> frozenset[int]:
    try:
        values = frozenset(int(v) for v in text.split(","))
    except ValueError as exc:
        raise IngestError(f"--actions={text!r} must be comma-separated integers, e.g. 0,1,2,3") from exc
    if not values or any(not 0 <= v <= 255 for v in values):
        raise IngestError(f"--actions={text!r}: every action must be an integer in [0, 255]")
    return values


def run(args: argparse.Namespace) -> int:
    url = args.store or os.environ.get("LONGRANK_STORE_URL") or DEFAULT_STORE_URL
    try:
        if args.batch_size < 1:
            raise IngestError(f"--batch-size={args.batch_size} must be >= 1")
        actions = _parse_actions(args.actions) if args.actions else default_actions(args.events)
        options = StoreOptions() if actions is None else replace(StoreOptions(), actions=actions)
        if url.startswith("sqlite:///"):
            path = url.split("://", 1)[1].split("?", 1)[0][1:]
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        store = open_store(url, options)
    except (IngestError, InvalidStoreURL) as exc:
        print(f"longrank ingest: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"longrank ingest: store {url}: {exc}", file=sys.stderr)
        return 1
    try:
        stats = ingest_file(
            args.events,
            store,
            batch_size=args.batch_size,
            skip_invalid=args.skip_invalid,
            progress=not args.no_progress,
        )
    except IngestError as exc:
        print(f"longrank ingest: {exc}", file=sys.stderr)
        return 2
    except IngestAborted as exc:
        done = exc.stats
        print(
            f"longrank ingest: stopped at {exc.bad} (use --skip-invalid to skip bad rows); "
            f"stored before it: read {done.read:,}, accepted {done.accepted:,}, duplicates {done.duplicates:,}",
            file=sys.stderr,
        )
        return 1
    except StoreError as exc:
        print(f"longrank ingest: store {url}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if stats.skipped:
        print(f"skipped {stats.skipped:,} bad row(s); the first {len(stats.bad_rows)}:", file=sys.stderr)
        for bad in stats.bad_rows:
            print(f"  {bad}", file=sys.stderr)
    print(json.dumps(stats.as_dict()) if args.json else f"{stats.path} -> {url}: {stats.summary()}")
    return 0
