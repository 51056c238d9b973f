"""`longrank serve`: run the HTTP API with uvicorn. Flags override the LONGRANK_* environment.

``--workers N`` (LONGRANK_WORKERS) > 1 runs N worker processes behind one socket under uvicorn's supervisor, which
restarts a worker that dies. Workers are started with the "spawn" method (torch and faiss must never be forked) and
build their app from the environment (``serving.app:app_from_env``), so the flags are passed on as LONGRANK_*
variables. Each worker gets ``cores ÷ N`` of the thread budget (LONGRANK_TORCH_THREADS defaults to that), and
/metrics aggregates every worker through prometheus-client's multiprocess mode: a fresh PROMETHEUS_MULTIPROC_DIR is
created for the run and removed at exit (one given in the environment is used as is and kept).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

from serving.settings import ENV_PREFIX, Settings, SettingsError, load_settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="bind address (LONGRANK_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (LONGRANK_PORT, default 8000)")
    parser.add_argument("--store", dest="store_url", help="store URL (LONGRANK_STORE_URL)")
    parser.add_argument("--artifact", help="model artifact directory (LONGRANK_ARTIFACT)")
    parser.add_argument("--workers", type=int, help="server processes (LONGRANK_WORKERS, default 1)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def worker_environment(args: argparse.Namespace, settings: Settings) -> dict[str, str]:
    """The LONGRANK_* variables a worker process needs to rebuild ``settings`` from its environment: the flags
    given on the command line, the worker count and the thread budget derived from it."""
    env = {
        f"{ENV_PREFIX}HOST": settings.host,
        f"{ENV_PREFIX}PORT": str(settings.port),
        f"{ENV_PREFIX}WORKERS": str(settings.workers),
        f"{ENV_PREFIX}TORCH_THREADS": str(settings.torch_threads),
    }
    if args.store_url is not None:
        env[f"{ENV_PREFIX}STORE_URL"] = settings.store_url
    if args.artifact is not None and settings.artifact is not None:
        env[f"{ENV_PREFIX}ARTIFACT"] = str(settings.artifact.resolve())
    return env


def run(args: argparse.Namespace) -> int:
    if args.workers is not None and not 1 <= args.workers <= 64:
        print(f"longrank serve: --workers={args.workers} must be between 1 and 64", file=sys.stderr)
        return 2
    try:
        settings = load_settings(host=args.host, port=args.port, store_url=args.store_url, artifact=args.artifact,
                                 workers=args.workers)
    except SettingsError as exc:
        print(f"longrank serve: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    if settings.workers == 1:
        from serving.app import create_app

        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=args.log_level,
                    access_log=False)
        return 0

    os.environ.update(worker_environment(args, settings))
    own_dir = None
    if not os.environ.get(MULTIPROC_ENV):
        own_dir = tempfile.mkdtemp(prefix="longrank-metrics-")
        os.environ[MULTIPROC_ENV] = own_dir
    print(f"longrank serve: {settings.workers} workers, {settings.torch_threads} torch thread(s) and "
          f"{settings.inference_slots()} inference slot(s) each; metrics in {os.environ[MULTIPROC_ENV]}",
          file=sys.stderr, flush=True)
    try:
        uvicorn.run("serving.app:app_from_env", factory=True, workers=settings.workers, host=settings.host,
                    port=settings.port, log_level=args.log_level, access_log=False)
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)
    return 0
