"""Fixtures shared by every test folder: where the test Redis is, free ports, and private redis-server processes.

- ``redis_url``: the Redis the integration and contract tests talk to, from ``LONGRANK_TEST_REDIS_URL``
  (``scripts/with-redis.sh`` exports it) or ``redis://127.0.0.1:6379/0``. Tests that use it take their own key
  prefix and delete their keys afterwards; they never FLUSHDB.
- ``free_port()``: a TCP port on 127.0.0.1 that nothing listens on right now.
- ``redis_server(*args)``: start a private ``redis-server`` on a free port in a temporary directory (extra command
  line arguments, e.g. ``"--appendonly", "yes"``), wait until it answers PING and return its handle
  (``stack.redis_procs.RedisProcess``: ``url``, ``port``, ``dir``, ``stop()``, ``kill()``, ``restart()``);
  every server is stopped at teardown.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable, Iterator

import pytest

from stack.redis_procs import LocalCluster, RedisProcess, start_cluster

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


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RedisProcess]]:
    """Factory: ``redis_server("--appendonly", "yes")`` starts a private server (no RDB snapshots unless asked);
    all are stopped at teardown."""
    started: list[RedisProcess] = []

    def start(*args: str) -> RedisProcess:
        server = RedisProcess(port=free_port(), dir=tmp_path_factory.mktemp("redis"), args=("--save", "", *args))
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A private 3-master Redis Cluster of local processes, shared by the session (contract suite and cluster tests)
    and stopped at its end."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server and redis-cli are needed for a local Redis Cluster")
    cluster = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()
