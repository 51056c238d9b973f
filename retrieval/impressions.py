"""Impression counts per ITEM (how often an item was shown to anyone), for AGE's eligibility rule: only items with
fewer than N impressions (default 3,000) are explored (REFERENCE.md, AGE online).

Opened from the behaviour store's URL with ``open_impressions(url, options)`` so the counts live next to the
behaviours:

- ``memory://``      a dict behind a lock (tests, benchmarks; per process);
- ``sqlite:///PATH`` table ``impressions(item_id INTEGER PRIMARY KEY, n INTEGER)`` in the same file (WAL), one
                     UPSERT transaction per ``add``; one connection per thread;
- ``redis://``       ONE hash ``{prefix}:impressions`` (field = decimal item id, value = count): ``add`` is one
                     pipeline of HINCRBY (one per distinct item), ``counts`` one HMGET. The connection comes from
                     ``retrieval.redis_client`` like the behaviour store's: ``?cluster=true`` talks to a Redis
                     Cluster (the hash sits on one slot, which is fine for a counter read once per rank request),
                     the same timeouts, no hidden retries (``counts`` runs once more after a connection error only
                     when ``options.retries`` allows; ``add`` never: HINCRBY is not idempotent).

Counts are only ever incremented; ``counts`` of an unknown item is 0. Errors are the store error tree's
(retrieval/errors.py), like the behaviour store's. No torch, no fastapi.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt

from retrieval.errors import InvalidStoreURL
from retrieval.redis_client import RedisConnection, RedisTarget
from retrieval.store.base import StoreOptions
from retrieval.store.factory import options_from_query
from retrieval.store.sqlite import JOURNAL_SIZE_LIMIT, sqlite_errors

IntArray = npt.NDArray[np.int64]


@runtime_checkable
class ImpressionCounter(Protocol):
    def add(self, items: npt.ArrayLike) -> None:
        """Count one impression per entry of ``items`` (an item may repeat)."""
        ...

    def counts(self, items: npt.ArrayLike) -> IntArray:
        """Impressions so far of each of ``items`` (int64, same order; unknown items 0)."""
        ...

    def close(self) -> None: ...


def _tally(items: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    arr = np.asarray(items, dtype=np.int64).reshape(-1)
    if len(arr) and arr.min() < 0:
        raise ValueError("impression item ids must be >= 0")
    ids, n = np.unique(arr, return_counts=True)
    return ids.astype(np.int64), n.astype(np.int64)


class MemoryImpressions:
    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self._lock = threading.Lock()

    def add(self, items: npt.ArrayLike) -> None:
        ids, n = _tally(items)
        with self._lock:
            for i, k in zip(ids.tolist(), n.tolist(), strict=True):
                self._counts[i] = self._counts.get(i, 0) + k

    def counts(self, items: npt.ArrayLike) -> IntArray:
        arr = np.asarray(items, dtype=np.int64).reshape(-1)
        with self._lock:
            return np.fromiter((self._counts.get(i, 0) for i in arr.tolist()), dtype=np.int64, count=len(arr))

    def close(self) -> None:
        pass


class SqliteImpressions:
    SCHEMA = "CREATE TABLE IF NOT EXISTS impressions (item_id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"
    CHUNK = 500  # ids per IN (...) query

    def __init__(self, path: str | Path, options: StoreOptions | None = None) -> None:
        self.path = Path(path)
        self.options = options or StoreOptions()
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._errors("open"):
            self._conn().execute(self.SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.options.command_timeout_s, isolation_level=None,
                                   check_same_thread=False)  # fmt: skip
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def _errors(self, what: str) -> AbstractContextManager[None]:
        return sqlite_errors("sqlite impressions", what, self.options.command_timeout_s, str(self.path))

    def add(self, items: npt.ArrayLike) -> None:
        ids, n = _tally(items)
        if not len(ids):
            return
        with self._errors("add"):
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT INTO impressions (item_id, n) VALUES (?, ?) "
                    "ON CONFLICT(item_id) DO UPDATE SET n = n + excluded.n",
                    zip(ids.tolist(), n.tolist(), strict=True),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def counts(self, items: npt.ArrayLike) -> IntArray:
        arr = np.asarray(items, dtype=np.int64).reshape(-1)
        found: dict[int, int] = {}
        distinct = np.unique(arr).tolist()
        with self._errors("counts"):
            conn = self._conn()
            for start in range(0, len(distinct), self.CHUNK):
                part = distinct[start : start + self.CHUNK]
                marks = ",".join("?" * len(part))
                found.update(conn.execute(f"SELECT item_id, n FROM impressions WHERE item_id IN ({marks})", part))
        return np.fromiter((found.get(i, 0) for i in arr.tolist()), dtype=np.int64, count=len(arr))

    def close(self) -> None:
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self._local = threading.local()


class RedisImpressions:
    def __init__(self, url: str, options: StoreOptions | None = None, *, cluster: bool | None = None) -> None:
        self.options = options or StoreOptions()
        self.key = f"{self.options.key_prefix}:impressions"
        target = RedisTarget.parse(url, password=self.options.password, cluster=cluster)
        self._redis = RedisConnection(target, connect_timeout_s=self.options.connect_timeout_s,
                                      command_timeout_s=self.options.command_timeout_s,
                                      retries=self.options.retries)  # fmt: skip

    @property
    def cluster(self) -> bool:
        return self._redis.cluster

    def add(self, items: npt.ArrayLike) -> None:
        ids, n = _tally(items)
        if not len(ids):
            return

        def run() -> None:
            pipe = self._redis.client.pipeline(transaction=False)
            for i, k in zip(ids.tolist(), n.tolist(), strict=True):
                pipe.hincrby(self.key, str(i), k)
            pipe.execute()

        self._redis.call("impressions add", run)

    def counts(self, items: npt.ArrayLike) -> IntArray:
        arr = np.asarray(items, dtype=np.int64).reshape(-1)
        if not len(arr):
            return np.zeros(0, dtype=np.int64)
        fields = [str(i) for i in arr.tolist()]
        values = self._redis.call("impressions counts", lambda: self._redis.client.hmget(self.key, fields),
                                  idempotent=True)  # fmt: skip
        return np.fromiter((int(v) if v is not None else 0 for v in values), dtype=np.int64, count=len(arr))

    def close(self) -> None:
        self._redis.close()


def open_impressions(url: str, options: StoreOptions | None = None) -> ImpressionCounter:
    """The impression counter living next to the behaviour store of ``url`` (same scheme, file or server)."""
    parts = urlsplit(url)
    opts = options_from_query(parts.query, options or StoreOptions())
    scheme = parts.scheme.lower()
    if scheme == "memory":
        return MemoryImpressions()
    if scheme == "sqlite":
        path = url.split("://", 1)[1].split("?", 1)[0]
        if not path.startswith("/") or path in {"/", "//", "/:memory:"}:
            raise InvalidStoreURL(f"sqlite URL {url!r} must look like sqlite:///relative/or/absolute/path.db")
        return SqliteImpressions(path[1:], opts)
    if scheme in {"redis", "rediss"}:
        return RedisImpressions(url, opts)
    raise InvalidStoreURL(f"store URL {url!r}: unknown scheme {scheme!r}; use memory://, sqlite:///PATH or redis://")
