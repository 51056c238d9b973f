"""`longrank serve`: run the HTTP API with uvicorn. Flags override the LONGRANK_* environment.

``--workers N`` (LONGRANK_WORKERS, default: the machine's cores) > 1 runs N worker processes behind one socket
under uvicorn's supervisor, which restarts a worker that dies. Workers are started with the "spawn" method (torch and
faiss must never be forked) and build their app from the environment (``serving.app:app_from_env``), so the flags
are passed on as LONGRANK_* variables. Each worker gets ``cores ÷ N`` of the thread budget (LONGRANK_TORCH_THREADS
defaults to that).

The fleet (serving/fleet.py): the master makes one run directory (``longrank-run-<pid>-*`` in the temp dir) and
hands it to every worker (LONGRANK_RUN_DIR) with its own pid (LONGRANK_SUPERVISOR_PID): ``metrics/`` is
prometheus-client's multiprocess directory (/metrics sums every worker; one given as PROMETHEUS_MULTIPROC_DIR is
used as is and kept), ``control/`` carries reloads to every worker. Workers die with the master (a parent-death
signal), so after a ``kill -9`` of the master the port is free again within a second or two; a new master first
removes run directories whose master is gone, and waits up to ``PORT_WAIT_S`` for the port to be free.

The Redis password need not be on this command line (where ``ps`` shows it): give it as LONGRANK_STORE_PASSWORD or
as ``?password_file=PATH`` in the store URL.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from serving.fleet import alive
from serving.settings import ENV_PREFIX, Settings, SettingsError, load_settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
RUN_PREFIX = "longrank-run-"
PORT_WAIT_S = 10.0
GRACEFUL_SHUTDOWN_S = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="bind address (LONGRANK_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (LONGRANK_PORT, default 8000)")
    parser.add_argument("--store", dest="store_url",
                        help="store URL (LONGRANK_STORE_URL; a Redis password: LONGRANK_STORE_PASSWORD)")
    parser.add_argument("--artifact", help="model artifact directory (LONGRANK_ARTIFACT)")
    parser.add_argument("--workers", type=int, help="server processes (LONGRANK_WORKERS, default: the cores)")
    parser.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"],
                        help="LONGRANK_LOG_LEVEL (default info)")


def worker_environment(args: argparse.Namespace, settings: Settings) -> dict[str, str]:
    """The LONGRANK_* variables a worker process needs to rebuild ``settings`` from its environment: the flags
    given on the command line, the worker count and the thread budget derived from it."""
    env = {
        f"{ENV_PREFIX}HOST": settings.host,
        f"{ENV_PREFIX}PORT": str(settings.port),
        f"{ENV_PREFIX}WORKERS": str(settings.workers),
        f"{ENV_PREFIX}TORCH_THREADS": str(settings.torch_threads),
        f"{ENV_PREFIX}LOG_LEVEL": settings.log_level,
    }
    if args.store_url is not None:
        env[f"{ENV_PREFIX}STORE_URL"] = settings.store_url
    if args.artifact is not None and settings.artifact is not None:
        env[f"{ENV_PREFIX}ARTIFACT"] = str(settings.artifact.resolve())
    return env


def remove_stale_run_dirs(parent: Path) -> list[Path]:
    """Run directories left by masters that died without cleaning up (kill -9)."""
    removed = []
    for path in parent.glob(f"{RUN_PREFIX}*"):
        m = re.match(rf"{RUN_PREFIX}(\d+)-", path.name)
        if m and not alive(int(m.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def wait_for_port(host: str, port: int, timeout_s: float = PORT_WAIT_S) -> bool:
    """Whether ``host:port`` can be bound within ``timeout_s`` (workers of a killed master may hold it a moment)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
                return True
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    return exc.errno != errno.EADDRINUSE  # another error: let uvicorn report it
        time.sleep(0.1)


def run(args: argparse.Namespace) -> int:
    if args.workers is not None and not 1 <= args.workers <= 64:
        print(f"longrank serve: --workers={args.workers} must be between 1 and 64", file=sys.stderr)
        return 2
    try:
        settings = load_settings(host=args.host, port=args.port, store_url=args.store_url, artifact=args.artifact,
                                 workers=args.workers, log_level=args.log_level)  # fmt: skip
    except SettingsError as exc:
        print(f"longrank serve: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    from serving.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    common = {"host": settings.host, "port": settings.port, "log_level": settings.log_level, "log_config": None,
              "access_log": False, "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S}  # fmt: skip
    if not wait_for_port(settings.host, settings.port):
        print(f"longrank serve: {settings.host}:{settings.port} is in use (waited {PORT_WAIT_S:g} s)",
              file=sys.stderr)  # fmt: skip
        return 1
    if settings.workers == 1:
        from serving.app import create_app

        uvicorn.run(create_app(settings), **common)  # type: ignore[arg-type]
        return 0

    parent = Path(tempfile.gettempdir())
    remove_stale_run_dirs(parent)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{RUN_PREFIX}{os.getpid()}-", dir=parent))
    os.environ.update(worker_environment(args, settings))
    os.environ[f"{ENV_PREFIX}RUN_DIR"] = str(run_dir)
    os.environ[f"{ENV_PREFIX}SUPERVISOR_PID"] = str(os.getpid())
    if not os.environ.get(MULTIPROC_ENV):
        (run_dir / "metrics").mkdir()
        os.environ[MULTIPROC_ENV] = str(run_dir / "metrics")
    print(f"longrank serve: {settings.workers} workers, {settings.torch_threads} torch thread(s) and "
          f"{settings.inference_slots()} inference slot(s) each; run directory {run_dir}", file=sys.stderr, flush=True)
    try:
        uvicorn.run("serving.app:app_from_env", factory=True, workers=settings.workers, **common)  # type: ignore[arg-type]
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0
