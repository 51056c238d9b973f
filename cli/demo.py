"""`longrank demo [--if-missing]`: the demo that `make serve` serves — MovieLens-100K, a `sim_can` model trained on
it, and every rating ingested as a behaviour into the configured store (LONGRANK_STORE_URL, by default the embedded
sqlite file). Each step runs through the same CLI verbs a user would type, in this process:

    longrank data ml100k --out var/demo/ml100k
    longrank train --data var/demo/ml100k --model sim_can --out var/demo/artifact
    longrank ingest var/demo/ml100k --store $LONGRANK_STORE_URL

With --if-missing, a step whose output exists is skipped (an artifact of this build's format whose files match its
manifest; the store already holds MovieLens user "1"), so a second `make serve` starts within seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from serving.settings import SettingsError, load_settings

DEMO_USER = "1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default="var/demo", help="where the data and the artifact go (default var/demo)")
    parser.add_argument("--store", dest="store_url", help="store URL (default LONGRANK_STORE_URL)")
    parser.add_argument("--if-missing", action="store_true", help="skip the steps whose results exist")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")


def run(args: argparse.Namespace) -> int:
    from cli.main import main

    try:
        settings = load_settings(store_url=args.store_url)
    except SettingsError as exc:
        print(f"longrank demo: {exc}", file=sys.stderr)
        return 2
    base = Path(args.dir)
    data, artifact = base / "ml100k", base / "artifact"
    steps: list[tuple[str, bool, list[str]]] = [
        ("data", (data / "meta.json").exists(), ["data", "ml100k", "--out", str(data)]),
        ("train", _artifact_current(artifact),
         ["train", "--data", str(data), "--model", "sim_can", "--out", str(artifact), "--epochs", str(args.epochs)]),
        ("ingest", _store_has_demo(settings.store_url), ["ingest", str(data), "--store", settings.store_url]),
    ]
    for name, done, argv in steps:
        if done and args.if_missing:
            print(f"longrank demo: {name}: already done, skipped", file=sys.stderr)
            continue
        print(f"longrank demo: {name}: longrank {' '.join(argv)}", file=sys.stderr)
        code = main(argv)
        if code != 0:
            print(f"longrank demo: step {name!r} failed with exit code {code}", file=sys.stderr)
            return code
    print(f"longrank demo: ready — artifact {artifact}, store {settings.store_url}", file=sys.stderr)
    return 0


def _artifact_current(path: Path) -> bool:
    """An artifact this build can serve is there (an older format, e.g. from before an upgrade, is rebuilt)."""
    from models.artifacts import ArtifactError, read_manifest

    if not (path / "manifest.json").exists():
        return False
    try:
        read_manifest(path)
    except ArtifactError as exc:
        print(f"longrank demo: {path} is not servable by this build, retraining: {exc}", file=sys.stderr)
        return False
    return True


def _store_has_demo(url: str) -> bool:
    from retrieval.store import StoreError, open_store

    try:
        store = open_store(url)
        try:
            return store.length(DEMO_USER) > 0
        finally:
            store.close()
    except StoreError:
        return False
