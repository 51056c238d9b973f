"""`longrank bench store`: the Redis behaviour store against its references, all measured in one run.

Fields (DESIGN §6), medians over ``--repeat`` runs unless said otherwise:

- ``read_p50_ms``: ``RedisStore.read`` of one ``--length``-behaviour user (default 54,000) with ``full=True``,
  ``recent=50`` and 10 categories (the read a rank call makes when it needs the full sequence for soft search:
  one MULTI/EXEC round trip of GET + HMGET, arrays as zero-copy views);
- ``raw_get_p50_ms``: a plain GET of the same packed bytes with the same client (the floor for any layout);
- ``list_layout_p50_ms``: the same events stored as a Redis list of per-event strings ``ts:item:cat:action``,
  LRANGE 0 -1 and parsing into the same structured numpy array (min(repeat, 20) runs: each takes tens of ms);
- ``ratio_vs_raw_get`` = read ÷ raw GET (lower is better; goal <= 1.5), ``ratio_vs_list`` = list ÷ read (higher
  is better; goal >= 20);
- ``bytes_per_event``: Redis memory of all the user's keys (sequence, category lists, counts; MEMORY USAGE) ÷
  events; ``seq_bytes_per_event`` is the packed sequence alone, ``list_bytes_per_event`` the list layout;
- ``ingest_events_per_s``: a bulk load through ``RedisStore.append``: ``--ingest-events`` events (default
  500,000) of ``--ingest-users`` users (default 1,000; 500 events each), every event with an event id, sorted by
  user (as a bulk load of histories sends them) and cut into batches of ``--ingest-batch`` events (default 10,000:
  20 users per batch, one script call each, one pipelined round trip per batch); events/s over the append calls;
- ``ingest_stream_events_per_s``: the same events in time order, interleaved across users (the shape of a live
  event stream: each batch touches every user with ~10 events, so per-call overhead dominates);
- ``sqlite_read_p50_ms``: the same read on the sqlite store (a file under ``--sqlite-path``), null if absent;
- ``redis_version``.

The bench writes under its own key prefix and deletes every key of it at the end (also on failure).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
from tqdm import tqdm

from retrieval.events import BEHAVIOR_DTYPE, RECORD_SIZE, Behaviors, EventBatch
from retrieval.store.base import StoreOptions
from retrieval.store.redis import RedisStore

TS0 = 1_600_000_000
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
N_CATEGORIES = 100  # categories of the benchmark user: ~540 events each at L=54k, so each list holds 200
READ_CATEGORIES = 10
RECENT = 50
LIST_REPEAT_MAX = 20
CHUNK = 10_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env_url = os.environ.get("LONGRANK_TEST_REDIS_URL") or DEFAULT_REDIS_URL
    parser.add_argument("--redis-url", default=env_url, help=f"Redis to measure (default {env_url})")
    parser.add_argument("--length", type=_positive("--length"), default=54_000, help="behaviours of the read user")
    parser.add_argument("--repeat", type=_positive("--repeat"), default=200, help="timed reads per variant")
    parser.add_argument("--ingest-events", type=_positive("--ingest-events"), default=500_000)
    parser.add_argument("--ingest-users", type=_positive("--ingest-users"), default=1_000)
    parser.add_argument("--ingest-batch", type=_positive("--ingest-batch"), default=10_000, help="events per append")
    parser.add_argument("--sqlite-path", default=None, help="sqlite file for the sqlite read (default: a temp file)")
    parser.add_argument("--seed", type=int, default=0)


def _positive(flag: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag}={text!r} must be an integer >= 1") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{flag}={value} must be >= 1")
        return value

    return parse


def measure(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    prefix = f"lrbench-{uuid.uuid4().hex[:8]}"
    options = StoreOptions(key_prefix=prefix, max_behaviors=max(54_000, args.length), command_timeout_s=30.0)
    store = RedisStore(args.redis_url, options)
    try:
        store.ping()
        result: dict[str, Any] = {"redis_version": store.client.info("server").get("redis_version")}
        user, events = "bench-reader", _user_events(rng, args.length)
        _load(store, user, events)
        categories = rng.choice(N_CATEGORIES, READ_CATEGORIES, replace=False).tolist()
        result.update(_reads(store, user, events, categories, args.repeat))
        result.update(_sqlite_read(args, options, user, events, categories))
        result.update(_ingest(store, rng, args))
        return _ordered(result)
    finally:
        _delete_prefix(store, prefix)
        store.close()


def _user_events(rng: np.random.Generator, n: int) -> Behaviors:
    out = np.empty(n, dtype=BEHAVIOR_DTYPE)
    out["ts"] = TS0 + np.cumsum(rng.integers(0, 600, n))
    out["item_id"] = rng.integers(0, 10_000_000, n)
    out["category_id"] = rng.integers(0, N_CATEGORIES, n)
    out["action"] = rng.integers(0, 4, n)
    return out


def _batch(user: str, records: Behaviors) -> EventBatch:
    return EventBatch.from_columns(
        user_id=[user] * len(records),
        item_id=records["item_id"],
        category_id=records["category_id"],
        ts=records["ts"],
        action=records["action"],
    )


def _load(store: Any, user: str, events: Behaviors) -> None:
    for start in range(0, len(events), CHUNK):
        store.append(_batch(user, events[start : start + CHUNK]))


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 4)


def _reads(store: RedisStore, user: str, events: Behaviors, categories: list[int], repeat: int) -> dict[str, Any]:
    client = store.client
    seq_key = store.keys(user).seq
    list_key = f"{store.options.key_prefix}:list:{{{user}}}"
    strings = [b"%d:%d:%d:%d" % tuple(r) for r in events.tolist()]
    for start in range(0, len(strings), CHUNK):
        client.rpush(list_key, *strings[start : start + CHUNK])

    def ours() -> None:
        h = store.read(user, recent=RECENT, categories=categories, full=True)
        assert h.full is not None and len(h.full) == len(events)

    def raw_get() -> None:
        blob = client.get(seq_key)
        assert blob is not None and len(blob) == len(events) * RECORD_SIZE

    def list_layout() -> None:
        items = cast(list[bytes], client.lrange(list_key, 0, -1))
        arr = np.array([tuple(map(int, s.split(b":"))) for s in items], dtype=BEHAVIOR_DTYPE)
        assert len(arr) == len(events)

    for fn in (ours, raw_get, list_layout):  # warm up connections, caches and the allocator
        fn()
    read_s: list[float] = []
    raw_s: list[float] = []
    list_s: list[float] = []
    list_every = max(1, repeat // LIST_REPEAT_MAX)
    for i in tqdm(range(repeat), desc="bench store: reads", unit="read", leave=False):
        read_s.append(_timed(ours))  # interleaved, so that drift hits every variant alike
        raw_s.append(_timed(raw_get))
        if i % list_every == 0:
            list_s.append(_timed(list_layout))
    user_keys = store.keys(user)
    memory = sum(int(client.memory_usage(k, samples=0) or 0) for k in (user_keys.seq, user_keys.cat, user_keys.cnt))
    list_memory = int(client.memory_usage(list_key, samples=0) or 0)
    client.delete(list_key)
    read_ms, raw_ms, list_ms = _median_ms(read_s), _median_ms(raw_s), _median_ms(list_s)
    return {
        "read_p50_ms": read_ms,
        "raw_get_p50_ms": raw_ms,
        "list_layout_p50_ms": list_ms,
        "ratio_vs_raw_get": round(read_ms / raw_ms, 3),
        "ratio_vs_list": round(list_ms / read_ms, 1),
        "bytes_per_event": round(memory / len(events), 2),
        "seq_bytes_per_event": round(int(client.strlen(seq_key)) / len(events), 2),
        "list_bytes_per_event": round(list_memory / len(events), 2),
    }


def _timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _sqlite_read(
    args: argparse.Namespace, options: StoreOptions, user: str, events: Behaviors, categories: list[int]
) -> dict[str, Any]:
    try:
        from retrieval.store.sqlite import SqliteStore
    except ImportError:
        return {"sqlite_read_p50_ms": None}
    with tempfile.TemporaryDirectory(prefix="lrbench-") as tmp:
        path = Path(args.sqlite_path) if args.sqlite_path else Path(tmp) / "bench.db"
        store = SqliteStore(path, options)
        try:
            store.delete(user)
            _load(store, user, events)
            store.read(user, recent=RECENT, categories=categories, full=True)

            def read() -> None:
                store.read(user, recent=RECENT, categories=categories, full=True)

            samples = [
                _timed(read)
                for _ in tqdm(range(args.repeat), desc="bench store: sqlite reads", unit="read", leave=False)
            ]
            store.delete(user)
        finally:
            store.close()
    return {"sqlite_read_p50_ms": _median_ms(samples)}


def _ingest_batches(rng: np.random.Generator, args: argparse.Namespace, grouped: bool) -> list[EventBatch]:
    n, users = args.ingest_events, args.ingest_users
    user_of = np.arange(n) % users  # round robin: time order interleaves the users
    ts = TS0 + np.arange(n) // users
    if grouped:
        order = np.argsort(user_of, kind="stable")
        user_of, ts = user_of[order], ts[order]
    names = [f"ingest-{u}" for u in range(users)]
    tag = "g" if grouped else "i"
    batches = []
    for start in range(0, n, args.ingest_batch):
        sl = slice(start, min(n, start + args.ingest_batch))
        m = sl.stop - sl.start
        batches.append(
            EventBatch.from_columns(
                user_id=[names[u] for u in user_of[sl].tolist()],
                item_id=rng.integers(0, 10_000_000, m),
                category_id=rng.integers(0, N_CATEGORIES, m),
                ts=ts[sl],
                action=rng.integers(0, 4, m),
                event_id=[f"{tag}{i}" for i in range(sl.start, sl.stop)],
            )
        )
    return batches


def _ingest(store: RedisStore, rng: np.random.Generator, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for grouped, field in ((True, "ingest_events_per_s"), (False, "ingest_stream_events_per_s")):
        batches = _ingest_batches(rng, args, grouped)
        total = accepted = 0
        elapsed = 0.0
        label = "bulk, by user" if grouped else "stream, interleaved"
        with tqdm(total=args.ingest_events, desc=f"bench store: ingest ({label})", unit="ev", leave=False) as bar:
            for b in batches:
                t0 = time.perf_counter()
                accepted += store.append(b)[0]
                elapsed += time.perf_counter() - t0
                total += len(b)
                bar.update(len(b))
        if accepted != total:
            raise RuntimeError(f"ingest accepted {accepted} of {total} events")
        out[field] = round(total / elapsed)
        pipe = store.client.pipeline(transaction=False)
        for u in range(args.ingest_users):
            pipe.delete(*store.keys(f"ingest-{u}").all())
        pipe.execute()
    return out


def _delete_prefix(store: RedisStore, prefix: str) -> None:
    try:
        keys = list(store.client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 1000):
            store.client.unlink(*keys[start : start + 1000])
    except Exception:  # cleanup must not hide the measurement's own error
        pass


def _ordered(result: dict[str, Any]) -> dict[str, Any]:
    first = [
        "read_p50_ms",
        "raw_get_p50_ms",
        "list_layout_p50_ms",
        "ratio_vs_raw_get",
        "ratio_vs_list",
        "bytes_per_event",
        "ingest_events_per_s",
    ]
    return {**{k: result[k] for k in first}, **{k: v for k, v in result.items() if k not in first}}
