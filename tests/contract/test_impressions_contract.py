"""The impression counter's contract, on every backend the behaviour store has (memory, sqlite, redis, Redis
Cluster), opened the way the service opens it: ``open_impressions(store URL)``."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from retrieval.impressions import ImpressionCounter, open_impressions
from tests.contract.conftest import Backend


@pytest.fixture
def make_counter(backend: Backend) -> Iterator[Callable[..., ImpressionCounter]]:
    opened: list[ImpressionCounter] = []

    def make(**options: object) -> ImpressionCounter:
        counter = open_impressions(backend.url(**options))
        opened.append(counter)
        return counter

    yield make
    for counter in opened:
        counter.close()


def test_unknown_items_count_zero_and_order_is_kept(make_counter: Callable[..., ImpressionCounter]) -> None:
    counter = make_counter()
    counter.add([5, 7, 7, 9, 7])
    got = counter.counts(np.array([7, 1, 5, 9, 7], dtype=np.int64))
    assert got.dtype == np.int64 and got.tolist() == [3, 0, 1, 1, 3]
    assert counter.counts([]).tolist() == []


def test_counts_add_up_over_calls_and_large_ids(make_counter: Callable[..., ImpressionCounter]) -> None:
    counter = make_counter()
    big = 2**63 - 1
    for _ in range(3):
        counter.add([big, 0])
    assert counter.counts([0, big]).tolist() == [3, 3]


def test_negative_ids_are_refused(make_counter: Callable[..., ImpressionCounter]) -> None:
    with pytest.raises(ValueError):
        make_counter().add([1, -2])


def test_concurrent_adds_lose_nothing(make_counter: Callable[..., ImpressionCounter]) -> None:
    counter = make_counter()
    items = np.arange(50, dtype=np.int64)

    def worker() -> None:
        for _ in range(10):
            counter.add(items)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter.counts(items).tolist() == [40] * 50


def test_two_counters_on_one_url_share_the_counts(backend: Backend,
                                                  make_counter: Callable[..., ImpressionCounter]) -> None:
    if not backend.shared_between_processes:
        pytest.skip("the memory counter lives in one object")
    a, b = make_counter(), make_counter()
    a.add([11, 11])
    b.add([11])
    assert a.counts([11]).tolist() == b.counts([11]).tolist() == [3]


def test_key_prefixes_keep_counters_apart(backend: Backend, make_counter: Callable[..., ImpressionCounter]) -> None:
    if backend.name not in {"redis", "redis_cluster"}:
        pytest.skip("the key prefix is a Redis option")
    mine, other = make_counter(), make_counter(key_prefix=f"{backend.fixed['key_prefix']}-{uuid.uuid4().hex[:4]}")
    mine.add([3])
    assert other.counts([3]).tolist() == [0]
