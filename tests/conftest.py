"""Fixtures shared by every test folder: where the test Redis is, free ports, and private redis-server processes.

- ``redis_url``: the Redis the integration and contract tests talk to, from ``LONGRANK_TEST_REDIS_URL``
  (``scripts/with-redis.sh`` exports it) or ``redis://127.0.0.1:6379/0``. Tests that use it take their own key
  prefix and delete their keys afterwards; they never FLUSHDB.
- ``free_port()``: a TCP port on 127.0.0.1 that nothing listens on right now.
- ``redis_server(*args)``: start a private ``redis-server`` on a free port in a temporary directory (extra command
  line arguments, e.g. ``"--appendonly", "yes"``), wait until it answers PING and return a ``RedisServer`` handle
  (``url``, ``port``, ``dir``, ``stop()``, ``kill()``, ``restart()``); every server is stopped at teardown.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def free_port() -> int:
    """A port on 127.0.0.1 that is free now (the OS picks it; a small race with other processes remains)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(name="free_port")
def free_port_fixture() -> Callable[[], int]:
    """The ``free_port`` helper as a fixture: call it for each port you need."""
    return free_port


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the shared test Redis (env LONGRANK_TEST_REDIS_URL, default redis://127.0.0.1:6379/0)."""
    return os.environ.get("LONGRANK_TEST_REDIS_URL") or DEFAULT_REDIS_URL


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    """A private redis-server process (started by the ``redis_server`` fixture)."""

    port: int
    dir: Path
    args: tuple[str, ...]
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.dir / "redis.log"

    def start(self, timeout_s: float = 10.0) -> None:
        """Start (or start again, e.g. after kill()) on the same port and directory; wait for PING."""
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server binary is not installed")
        cmd = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--logfile", str(self.log),
            "--save", "",
            *self.args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if _pings(self.port):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        log = self.log.read_text() if self.log.exists() else "(no log)"
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING; log:\n{log[-2000:]}")

    def stop(self) -> None:
        """Terminate gracefully (SIGTERM; SIGKILL after 10 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash would (no shutdown save)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RedisServer]]:
    """Factory: ``redis_server("--appendonly", "yes")`` starts a private server; all are stopped at teardown."""
    started: list[RedisServer] = []

    def start(*args: str) -> RedisServer:
        server = RedisServer(port=free_port(), dir=tmp_path_factory.mktemp("redis"), args=tuple(args))
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()
