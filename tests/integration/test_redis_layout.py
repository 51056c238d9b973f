"""The Redis layout of retrieval/store/redis.py, pinned against the raw keys of a real Redis (read with a plain
client): key names and hash tags, record bytes, category and count hashes, the event-id set, the dead prefix kept
within its margin, erasure of every key; and the category lists / eviction bookkeeping of the Lua script checked
against the in-memory reference store on random workloads (late events, ties, duplicates, small caps)."""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import redis
from redis.crc import key_slot

from retrieval.errors import StoreError
from retrieval.events import RECORD_SIZE, EventBatch
from retrieval.store.base import StoreOptions
from retrieval.store.memory import MemoryStore
from retrieval.store.redis import RedisStore, trim_margin

pytestmark = pytest.mark.redis

TS0 = 1_600_000_000


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test; every key under it is deleted afterwards."""
    name = f"test-layout-{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{name}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def make(redis_url: str, prefix: str, **options: Any) -> RedisStore:
    return RedisStore(redis_url, StoreOptions(key_prefix=prefix, **options))


def batch(
    user: str, ts: list[int], items: list[int], cats: list[int], eids: list[str | None] | None = None
) -> EventBatch:
    n = len(ts)
    return EventBatch.from_columns(
        user_id=[user] * n,
        item_id=items,
        category_id=cats,
        ts=[TS0 + t for t in ts],
        action=[i % 4 for i in items],
        event_id=eids,
    )


def record(ts: int, item: int, cat: int, action: int) -> bytes:
    """One record, packed by hand (not with retrieval.events.pack) so that the byte layout itself is pinned."""
    return struct.pack("<qqiB", TS0 + ts, item, cat, action)


def test_keys_records_category_hash_and_event_ids(redis_url: str, prefix: str, raw: redis.Redis) -> None:
    store = make(redis_url, prefix, dedupe_window_s=3600)
    before_ms = int(time.time() * 1000)
    # arrival order: item 7 is late (ts 1 < 3), items 5 and 6 tie on ts 3 (arrival order kept)
    assert store.append(batch("alice", [2, 3, 3], [5, 6, 3], [10, 20, 10], ["e5", "e6", None])) == (3, 0)
    assert store.append(batch("alice", [1, 4], [7, 8], [20, 10], ["e7", "e5"])) == (1, 1)
    after_ms = int(time.time() * 1000)

    base = f"{prefix}:{{alice}}"
    names = {k.decode() for k in raw.scan_iter(match=f"{prefix}:*")}
    assert names == {f"{base}:seq", f"{base}:cat", f"{base}:cnt", f"{base}:eid"}
    assert len({key_slot(name.encode()) for name in names}) == 1  # one Cluster slot: the {alice} hash tag
    assert key_slot(f"{base}:seq".encode()) == key_slot(b"alice")

    seq = raw.get(f"{base}:seq")
    assert seq == record(1, 7, 20, 3) + record(2, 5, 10, 1) + record(3, 6, 20, 2) + record(3, 3, 10, 3)
    assert raw.hgetall(f"{base}:cat") == {
        b"10": record(2, 5, 10, 1) + record(3, 3, 10, 3),
        b"20": record(1, 7, 20, 3) + record(3, 6, 20, 2),
    }
    assert raw.hgetall(f"{base}:cnt") == {b"10": b"2", b"20": b"2"}
    ids = dict(raw.zrange(f"{base}:eid", 0, -1, withscores=True))
    assert set(ids) == {b"e5", b"e6", b"e7"}
    server_ms = [int(s) for s in ids.values()]
    assert all(before_ms - 5_000 <= s <= after_ms + 5_000 for s in server_ms)  # first-seen server time in ms
    assert 0 < raw.pttl(f"{base}:eid") <= 3_600_000
    assert raw.ttl(f"{base}:seq") == -1  # behaviours never expire

    h = store.read("alice", recent=3, categories=[20, 99], full=True)
    assert h.length == 4
    assert h.full is not None and h.full.tobytes() == seq
    assert h.recent.tobytes() == seq[RECORD_SIZE:]
    assert h.by_category[20].tobytes() == record(1, 7, 20, 3) + record(3, 6, 20, 2)
    assert len(h.by_category[99]) == 0
    store.close()


def test_delete_removes_every_key_of_the_user_only(redis_url: str, prefix: str, raw: redis.Redis) -> None:
    store = make(redis_url, prefix)
    store.append(batch("bob", [1, 2], [1, 2], [3, 4], ["x", "y"]))
    store.append(batch("carol", [1], [1], [3], ["x"]))
    assert len(list(raw.scan_iter(match=f"{prefix}:{{bob}}:*"))) == 4
    assert store.delete("bob") is True
    assert list(raw.scan_iter(match=f"{prefix}:{{bob}}*")) == []
    assert len(list(raw.scan_iter(match=f"{prefix}:{{carol}}:*"))) == 4
    assert store.delete("bob") is False
    store.close()


def test_dead_prefix_stays_within_the_margin(redis_url: str, prefix: str, raw: redis.Redis) -> None:
    cap, step = 256, 3  # margin 4: the string carries 0..4 dead records between trims
    margin = trim_margin(cap)
    store = make(redis_url, prefix, max_behaviors=cap, per_category=8)
    key = f"{prefix}:{{dan}}:seq"
    sizes = []
    for b in range(100):
        ts = list(range(b * step, (b + 1) * step))
        store.append(batch("dan", ts, ts, [t % 3 for t in ts]))
        stored = raw.strlen(key) // RECORD_SIZE
        sizes.append(stored)
        assert stored <= cap + margin
        h = store.read("dan", recent=cap + 50, categories=[0, 1, 2], full=True)
        total = step * (b + 1)
        live = min(total, cap)
        assert h.length == live and store.length("dan") == live
        assert h.full is not None and len(h.full) == live and len(h.recent) == live
        assert h.full["item_id"].tolist() == list(range(total - live, total))
        for c in range(3):
            want = [i for i in range(total - live, total) if i % 3 == c][-8:]
            assert h.by_category[c]["item_id"].tolist() == want
    assert max(sizes) > cap  # the string did carry a dead prefix at some point (lazy trim) ...
    assert raw.hlen(f"{prefix}:{{dan}}:cnt") == 3
    counts = {int(k): int(v) for k, v in raw.hgetall(f"{prefix}:{{dan}}:cnt").items()}
    assert sum(counts.values()) == cap  # ... but the category counts follow the live sequence
    store.close()


def _random_batch(rng: np.random.Generator, users: list[str], clock: int, next_item: int) -> EventBatch:
    n = int(rng.integers(1, 25))
    late = rng.random(n) < 0.3
    ts = np.where(late, clock - rng.integers(0, 200, n), clock + rng.integers(0, 4, n))
    eids = [f"e{int(x)}" if rng.random() < 0.6 else None for x in rng.integers(0, 300, n)]
    return EventBatch.from_columns(
        user_id=[users[int(i)] for i in rng.integers(0, len(users), n)],
        item_id=np.arange(next_item, next_item + n),
        category_id=rng.integers(0, 5, n),
        ts=TS0 + np.maximum(ts, 0),
        action=rng.integers(0, 4, n),
        event_id=eids,
    )


@pytest.mark.parametrize(("seed", "cap"), [(0, 40), (1, 40), (2, 130), (3, 130)])
def test_random_workload_matches_the_reference_store(
    redis_url: str, prefix: str, raw: redis.Redis, seed: int, cap: int
) -> None:
    """Late events that land in the evicted prefix, ties, duplicates and big batches: every read equals the
    reference's, and the count hash equals the categories of the live sequence."""
    rng = np.random.default_rng(seed)
    options = {"max_behaviors": cap, "per_category": 4}
    store = make(redis_url, f"{prefix}-{seed}", **options)
    reference = MemoryStore(StoreOptions(**options))
    users = ["u1", "u2", "u3"]
    clock, next_item = 100, 0
    for _ in range(60):
        b = _random_batch(rng, users, clock, next_item)
        clock, next_item = clock + 3, next_item + len(b)
        assert store.append(b) == reference.append(b)
        for user in users:
            got = store.read(user, recent=7, categories=range(6), full=True)
            want = reference.read(user, recent=7, categories=range(6), full=True)
            assert got.length == want.length
            assert got.full is not None and want.full is not None
            assert got.full.tobytes() == want.full.tobytes()
            assert got.recent.tobytes() == want.recent.tobytes()
            for c in range(6):
                assert got.by_category[c].tobytes() == want.by_category[c].tobytes(), (user, c)
            counts = {int(k): int(v) for k, v in raw.hgetall(f"{prefix}-{seed}:{{{user}}}:cnt").items()}
            cats, n = np.unique(want.full["category_id"], return_counts=True)
            assert counts == dict(zip(cats.tolist(), n.tolist(), strict=True))
    store.close()


def test_a_server_side_error_is_wrapped_and_keeps_the_url_out_of_the_message(
    redis_url: str, prefix: str, raw: redis.Redis
) -> None:
    store = make(redis_url, prefix)
    raw.set(f"{prefix}:{{eve}}:cat", b"not a hash")  # a foreign value where the category hash belongs
    with pytest.raises(StoreError) as info:
        store.append(batch("eve", [1], [1], [1]))
    assert not isinstance(info.value, redis.RedisError)
    host = urlsplit(redis_url).netloc.rsplit("@", 1)[-1]
    assert host not in str(info.value) and host in str(info.value.where)  # clients see no host; logs do
    assert store.append(batch("frank", [1], [1], [1])) == (1, 0)  # other users are unaffected
    store.close()
