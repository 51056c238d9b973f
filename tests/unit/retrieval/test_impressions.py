"""Impression counters (retrieval/impressions.py) on every backend: memory, sqlite, and the real test Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from retrieval.errors import StoreUnavailable
from retrieval.impressions import ImpressionCounter, SqliteImpressions, open_impressions
from retrieval.store.base import StoreOptions


@pytest.fixture(params=["memory", "sqlite", "redis"])
def counter(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str) -> Iterator[ImpressionCounter]:
    kind = request.param
    if kind == "memory":
        c = open_impressions("memory://")
    elif kind == "sqlite":
        c = open_impressions(f"sqlite:///{tmp_path}/b.db")
    else:
        prefix = f"test-imp-{uuid.uuid4().hex[:8]}"
        c = open_impressions(redis_url, StoreOptions(key_prefix=prefix))
    yield c
    c.close()
    if kind == "redis":
        client = redis.Redis.from_url(redis_url)
        client.delete(f"{prefix}:impressions")
        client.close()


def test_counts_start_at_zero_and_add_up(counter: ImpressionCounter) -> None:
    assert counter.counts([5, 7]).tolist() == [0, 0]
    counter.add([5, 5, 9, 5])
    counter.add(np.array([9, 11], dtype=np.int64))
    assert counter.counts([5, 9, 11, 12, 5]).tolist() == [3, 2, 1, 0, 3]
    counter.add([])
    assert counter.counts([]).tolist() == []


def test_many_items_and_large_ids(counter: ImpressionCounter) -> None:
    items = np.arange(2_000, dtype=np.int64) * 1_000_003 + 2**40
    counter.add(items)
    counter.add(items[::2])
    got = counter.counts(items)
    assert got[::2].tolist() == [2] * 1_000 and got[1::2].tolist() == [1] * 1_000


def test_negative_ids_are_refused(counter: ImpressionCounter) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        counter.add([-1])


def test_sqlite_counts_persist_next_to_the_store(tmp_path: Path) -> None:
    from retrieval.store import open_store

    url = f"sqlite:///{tmp_path}/b.db"
    store = open_store(url)
    first = open_impressions(url)
    first.add([1, 1, 2])
    first.close()
    second = open_impressions(url)
    assert second.counts([1, 2]).tolist() == [2, 1]
    second.close()
    store.close()


def test_unreachable_redis_is_store_unavailable(free_port: object) -> None:
    port = free_port()  # type: ignore[operator]
    c = open_impressions(f"redis://127.0.0.1:{port}/0", StoreOptions(connect_timeout_s=0.2, command_timeout_s=0.2))
    with pytest.raises(StoreUnavailable):
        c.counts([1])


def test_sqlite_directory_is_created(tmp_path: Path) -> None:
    c = SqliteImpressions(tmp_path / "deep" / "x.db")
    c.add([3])
    assert c.counts([3]).tolist() == [1]
    c.close()
