"""Durability of RedisStore on a private redis-server with ``--appendonly yes --appendfsync always``: every
acknowledged append survives ``kill -9`` and a restart on the same directory and port, nothing is doubled, the
remembered event ids survive too, and the same store object keeps working after the restart (reconnects, and
reloads its Lua script on NOSCRIPT: a restarted server has an empty script cache)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from retrieval.errors import StoreUnavailable
from retrieval.events import EventBatch
from retrieval.store.base import StoreOptions
from retrieval.store.redis import RedisStore

pytestmark = pytest.mark.redis

TS0 = 1_600_000_000
AOF_ARGS = ("--appendonly", "yes", "--appendfsync", "always")


def batch_of(users: list[str], first_item: int, size: int, rng: np.random.Generator) -> EventBatch:
    """``size`` events over ``users``; item ids are unique and name the event; ts jitter makes some arrive late."""
    items = np.arange(first_item, first_item + size)
    return EventBatch.from_columns(
        user_id=[users[i % len(users)] for i in range(size)],
        item_id=items,
        category_id=items % 7,
        ts=TS0 + items // 3 - rng.integers(0, 30, size),
        action=items % 4,
        event_id=[f"ev-{i}" for i in items.tolist()],
    )


def stored_items(store: RedisStore, user: str) -> list[int]:
    full = store.read(user, full=True).full
    assert full is not None
    assert np.all(np.diff(full["ts"]) >= 0)
    return [int(x) for x in full["item_id"]]


def test_acknowledged_appends_survive_kill_9(redis_server: Callable[..., Any]) -> None:
    server = redis_server(*AOF_ARGS)
    store = RedisStore(server.url, StoreOptions(key_prefix="dur", connect_timeout_s=2, command_timeout_s=5))
    rng = np.random.default_rng(3)
    users = ["a", "b", "c"]
    sent: list[EventBatch] = []
    for b in range(20):
        events = batch_of(users, b * 50, 50, rng)
        assert store.append(events) == (50, 0)  # acknowledged
        sent.append(events)
    before = {u: stored_items(store, u) for u in users}

    server.kill()  # SIGKILL: no shutdown save
    with pytest.raises(StoreUnavailable):
        store.ping()
    server.start()

    for user in users:
        after = stored_items(store, user)
        assert after == before[user]  # same events, same order
        assert len(after) == len(set(after))  # nothing doubled
    all_items = sorted(i for u in users for i in before[u])
    assert all_items == list(range(20 * 50))
    # the event ids were persisted too: resending every batch stores nothing new
    for events in sent:
        assert store.append(events) == (0, 50)
    h = store.read("a", categories=[3], full=True)
    assert h.full is not None
    assert h.by_category[3]["item_id"].tolist() == h.full["item_id"][h.full["category_id"] == 3].tolist()[-200:]
    store.close()


def test_kill_9_during_a_stream_of_appends_loses_no_acknowledged_event(redis_server: Callable[..., Any]) -> None:
    server = redis_server(*AOF_ARGS)
    store = RedisStore(server.url, StoreOptions(key_prefix="dur", connect_timeout_s=2, command_timeout_s=5))
    rng = np.random.default_rng(11)
    users = [f"u{i}" for i in range(8)]
    acked: list[int] = []
    failed: list[BaseException] = []
    started = threading.Event()

    def writer() -> None:
        b = 0
        while True:
            events = batch_of(users, b * 40, 40, rng)
            try:
                store.append(events)
            except StoreUnavailable as exc:  # the server died under us: stop
                failed.append(exc)
                return
            acked.extend(events.item_id.tolist())
            b += 1
            if b == 25:
                started.set()

    thread = threading.Thread(target=writer)
    thread.start()
    assert started.wait(30)
    server.kill()
    thread.join(30)
    assert not thread.is_alive() and failed, "the writer should have seen the server die"
    server.start()

    found = [i for u in users for i in stored_items(store, u)]
    assert len(found) == len(set(found))  # nothing doubled
    assert set(acked) <= set(found)  # every acknowledged event is there
    assert len(set(found) - set(acked)) <= 40  # at most the one batch in flight applied without its ack
    store.close()
