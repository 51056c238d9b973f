"""`longrank serve`: run the HTTP API with uvicorn. Flags override the LONGRANK_* environment."""

from __future__ import annotations

import argparse
import sys

from serving.settings import SettingsError, load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="bind address (LONGRANK_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (LONGRANK_PORT, default 8000)")
    parser.add_argument("--store", dest="store_url", help="store URL (LONGRANK_STORE_URL)")
    parser.add_argument("--artifact", help="model artifact directory (LONGRANK_ARTIFACT)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(host=args.host, port=args.port, store_url=args.store_url, artifact=args.artifact)
    except SettingsError as exc:
        print(f"longrank serve: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    from serving.app import create_app

    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=args.log_level,
                access_log=False)
    return 0
