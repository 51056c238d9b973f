"""``make stack``: docker-compose.yml's topology as local processes, no container engine needed.

    redis      redis-server with docker/redis.conf (AOF everysec, noeviction), on 127.0.0.1:--redis-port, its
               files in DIR/redis (kept between runs, like the compose volume)
    bootstrap  longrank data -> longrank train -> longrank ingest, each step skipped when its result exists
               (DIR/data/meta.json, DIR/artifact/manifest.json, the dataset's first user already in the store)
    ranker     longrank serve --workers N against that Redis and artifact, on 127.0.0.1:--port

``start_stack(config)`` returns a running ``Stack`` (the tests drive it); ``main()`` prints the URLs and waits
until Ctrl-C or SIGTERM, then stops the ranker (its supervisor stops the workers) and Redis (which syncs its AOF).
Every step is the CLI a user would type, run as a subprocess, so this launcher never imports torch.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from stack.redis_procs import RedisProcess, RedisProcessError, command, free_port, start_server

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONF = REPO / "docker" / "redis.conf"


class StackError(RuntimeError):
    """A step of the stack failed; the message names the step and its output."""


@dataclass(frozen=True)
class StackConfig:
    dir: Path = Path("var/stack")
    port: int = 8000  # 0 = a free port
    redis_port: int = 6390  # 0 = a free port
    workers: int = 2
    data: str = "ml100k"  # or "synthetic"
    synthetic: tuple[str, ...] = ("--users", "200", "--length", "2000")  # `longrank data synthetic` flags
    train: tuple[str, ...] = ("--epochs", "3")  # extra `longrank train` flags
    redis_conf: Path = DEFAULT_CONF
    ready_timeout_s: float = 120.0


@dataclass
class Stack:
    """A running stack: ``url`` (HTTP API), ``store_url``, ``redis``, ``server`` (the `longrank serve` process)."""

    config: StackConfig
    redis: RedisProcess
    store_url: str
    artifact: Path
    env: dict[str, str]
    server: subprocess.Popen[bytes] | None = None
    port: int = 0
    log: Path = field(default=Path("serve.log"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> list[int]:
        """The pids of the uvicorn worker processes (children of the serve process started by spawn)."""
        if self.server is None:
            return []
        return sorted(pid for pid in child_pids(self.server.pid) if b"spawn_main" in _cmdline(pid))

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGINT)  # uvicorn's supervisor stops its workers gracefully
            try:
                self.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        self.server = None
        self.redis.stop()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def child_pids(parent: int) -> list[int]:
    """Direct children of ``parent`` (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent:
            out.append(int(entry.name))
    return out


def _longrank(*argv: str, env: dict[str, str], step: str) -> None:
    """Run one `longrank VERB ...` in a subprocess; raise StackError with its output when it fails."""
    print(f"stack: {step}: longrank {' '.join(argv)}", file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, "-m", "cli.main", *argv], env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise StackError(f"{step} failed (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


def _first_user(data: Path) -> str:
    import pyarrow.parquet as pq

    column = pq.ParquetFile(data / "behaviors.parquet").read_row_group(0, columns=["user_id"]).column(0)
    return str(column[0])


def _store_holds(store_url: str, user: str) -> bool:
    from retrieval.store import StoreError, open_store

    try:
        store = open_store(store_url)
        try:
            return store.length(user) > 0
        finally:
            store.close()
    except StoreError:
        return False


def bootstrap(config: StackConfig, store_url: str, env: dict[str, str]) -> tuple[Path, list[int]]:
    """data -> train -> ingest (each skipped when done); returns the artifact directory and the dataset's actions."""
    data, artifact = config.dir / "data", config.dir / "artifact"
    if (data / "meta.json").exists():
        print(f"stack: data: {data} exists, skipped", file=sys.stderr)
    elif config.data == "ml100k":
        _longrank("data", "ml100k", "--out", str(data), env=env, step="data")
    else:
        _longrank("data", "synthetic", "--out", str(data), *config.synthetic, "--no-progress", env=env, step="data")
    if (artifact / "manifest.json").exists():
        print(f"stack: train: {artifact} exists, skipped", file=sys.stderr)
    else:
        _longrank("train", "--data", str(data), "--model", "sim_can", "--out", str(artifact), "--quiet",
                  *config.train, env=env, step="train")
    if _store_holds(store_url, _first_user(data)):
        print("stack: ingest: the store already holds the dataset, skipped", file=sys.stderr)
    else:
        _longrank("ingest", str(data), "--store", store_url, "--no-progress", env=env, step="ingest")
    # the service accepts the default actions (0 view .. 3 purchase) and the dataset's (ml100k: ratings 1..5)
    actions = {0, 1, 2, 3} | {int(a) for a in json.loads((data / "meta.json").read_text()).get("actions", [])}
    return artifact, sorted(actions)


def wait_ready(url: str, timeout_s: float, server: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url``/readyz until it answers 200; raise StackError on timeout or when ``server`` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise StackError(f"the ranker exited with code {server.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise StackError(f"{url}/readyz did not answer 200 within {timeout_s} s")


def start_stack(config: StackConfig) -> Stack:
    """Start Redis, bootstrap, start the ranker workers and wait until /readyz answers. Stops what it started when
    a step fails."""
    config.dir.mkdir(parents=True, exist_ok=True)
    redis_port = config.redis_port or free_port()
    if command(redis_port, "PING"):
        raise StackError(f"port {redis_port} is already in use; pass --redis-port 0 for a free one")
    redis = start_server(config.dir / "redis", port=redis_port, conf=config.redis_conf,
                         args=("--bind", "127.0.0.1", "--protected-mode", "yes"))
    store_url = f"redis://127.0.0.1:{redis_port}/0"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LONGRANK_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    stack = Stack(config, redis, store_url, config.dir / "artifact", env, log=config.dir / "serve.log")
    try:
        artifact, actions = bootstrap(config, store_url, env)
        stack.port = config.port or free_port()
        env.update({"LONGRANK_STORE_URL": store_url, "LONGRANK_ARTIFACT": str(artifact.resolve()),
                    "LONGRANK_ACTIONS": json.dumps(actions), "LONGRANK_HOST": "127.0.0.1",
                    "LONGRANK_PORT": str(stack.port), "LONGRANK_WORKERS": str(config.workers)})
        with stack.log.open("ab") as log:
            stack.server = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--log-level", "warning"],
                                            env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_ready(stack.url, config.ready_timeout_s, stack.server)
    except BaseException:
        stack.stop()
        raise
    return stack


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=Path("var/stack"), help="data, artifact, redis files, logs")
    parser.add_argument("--port", type=int, default=8000, help="ranker port (0 = free; default 8000)")
    parser.add_argument("--redis-port", type=int, default=6390, help="redis port (0 = free; default 6390)")
    parser.add_argument("--workers", type=int, default=2, help="ranker worker processes (default 2)")
    parser.add_argument("--data", choices=["ml100k", "synthetic"], default="ml100k", help="dataset (default ml100k)")
    parser.add_argument("--redis-conf", type=Path, default=DEFAULT_CONF, help="redis.conf (default docker/redis.conf)")


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops the stack the way Ctrl-C does."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make stack", description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= 64:
        print(f"stack: --workers={args.workers} must be between 1 and 64", file=sys.stderr)
        return 2
    if not args.redis_conf.is_file():
        print(f"stack: --redis-conf {args.redis_conf}: no such file", file=sys.stderr)
        return 2
    config = StackConfig(dir=args.dir, port=args.port, redis_port=args.redis_port, workers=args.workers,
                         data=args.data, redis_conf=args.redis_conf)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        stack = start_stack(config)
    except (StackError, RedisProcessError) as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    users = ' --users 943 --user-prefix ""' if args.data == "ml100k" else ""
    print(f"\nstack: ready ({args.workers} ranker workers, pids {stack.worker_pids()})\n"
          f"  API      {stack.url}   (docs {stack.url}/docs)\n"
          f"  metrics  {stack.url}/metrics\n"
          f"  redis    {stack.store_url}   (AOF in {config.dir / 'redis'})\n"
          f"  logs     {stack.log}\n"
          f"  load     .venv/bin/longrank loadtest --url {stack.url} --rate 20 --duration 30{users}\n"
          "Ctrl-C stops everything.", flush=True)
    try:
        while stack.server is not None and stack.server.poll() is None:
            time.sleep(0.5)
        print("stack: the ranker exited", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstack: stopping", file=sys.stderr)
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
