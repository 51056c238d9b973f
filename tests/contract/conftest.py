"""One store contract, every backend: the ``backend``, ``make_store`` and ``store`` fixtures.

Each test runs once per backend: ``memory``, ``sqlite`` (a file in tmp_path), ``redis`` (the real Redis at
LONGRANK_TEST_REDIS_URL, a key prefix of its own per test, every key under that prefix deleted afterwards) and
``redis_cluster`` (a private 3-master Redis Cluster of local redis-server processes on free ports, started once per
session when the first such test runs, reached with ``?cluster=true``, flushed after each test). The redis params
are skipped while ``retrieval.store.redis`` cannot be imported; the cluster one also when redis-server or
redis-cli is missing.

Stores are opened through ``open_store(url)`` with the options as URL query parameters, so the URL parsing is part
of the contract and a subprocess can open the very same store from ``backend.url(**options)``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from retrieval.store.base import BehaviorStore
from retrieval.store.factory import open_store

BACKENDS = [
    "memory",
    "sqlite",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("redis_cluster", marks=pytest.mark.redis),
]


def _query(options: dict[str, Any]) -> str:
    params = {k: ",".join(str(a) for a in sorted(v)) if k == "actions" else str(v) for k, v in options.items()}
    return urlencode(params)


@dataclass
class Backend:
    """How to reach one backend's store for one test."""

    name: str
    base_url: str
    fixed: dict[str, Any] = field(default_factory=dict)  # options every store of this test gets (key_prefix)
    shared_between_processes: bool = True

    def url(self, **options: Any) -> str:
        query = _query({**self.fixed, **options})
        if not query:
            return self.base_url
        return f"{self.base_url}{'&' if '?' in self.base_url else '?'}{query}"


def _redis_backend(redis_url: str) -> tuple[Backend, Callable[[], None]]:
    try:
        import retrieval.store.redis  # noqa: F401
    except ImportError:
        pytest.skip("redis backend not present")
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"no Redis answers at {redis_url} ({exc}); run the tests under scripts/with-redis.sh")
    prefix = f"test-{uuid.uuid4().hex[:8]}"

    def cleanup() -> None:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.unlink(*keys[start : start + 500])
        client.close()

    return Backend("redis", redis_url, fixed={"key_prefix": prefix}), cleanup


def _cluster_backend(request: pytest.FixtureRequest) -> tuple[Backend, Callable[[], None]]:
    try:
        import retrieval.store.redis  # noqa: F401
    except ImportError:
        pytest.skip("redis backend not present")
    from stack.redis_procs import command

    cluster = request.getfixturevalue("redis_cluster")
    prefix = f"test-{uuid.uuid4().hex[:8]}"

    def cleanup() -> None:  # the cluster is private to this session: empty every node
        for node in cluster.nodes:
            command(node.port, "FLUSHALL")

    return Backend("redis_cluster", cluster.url, fixed={"key_prefix": prefix}), cleanup


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str) -> Iterator[Backend]:
    name = request.param
    if name == "redis_cluster":
        be, cleanup = _cluster_backend(request)
        try:
            yield be
        finally:
            cleanup()
    elif name == "memory":
        yield Backend("memory", "memory://", shared_between_processes=False)
    elif name == "sqlite":
        yield Backend("sqlite", f"sqlite:///{tmp_path / 'store' / 'behaviors.db'}")
    else:
        be, cleanup = _redis_backend(redis_url)
        try:
            yield be
        finally:
            cleanup()


@pytest.fixture
def make_store(backend: Backend) -> Iterator[Callable[..., BehaviorStore]]:
    """``make_store(max_behaviors=50, per_category=5, ...)``: open the backend with these options."""
    opened: list[BehaviorStore] = []

    def make(**options: Any) -> BehaviorStore:
        store = open_store(backend.url(**options))
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: Callable[..., BehaviorStore]) -> BehaviorStore:
    """The backend with default options."""
    return make_store()
