"""``sqlite:///PATH``: the embedded default store — one file, no infrastructure, durable, multi-process safe.

Layout (one database file, WAL journal)::

    behaviors(user_id TEXT PRIMARY KEY, n INTEGER, seq BLOB)
        seq = the user's whole sequence as ONE packed blob of 21-byte little-endian records
              (retrieval.events.pack/unpack), sorted by (ts, arrival); n = len(seq) / 21
    event_ids(user_id TEXT, event_id TEXT, seen_at REAL, PRIMARY KEY (user_id, event_id)) WITHOUT ROWID
        + index on seen_at for pruning; seen_at = unix seconds when the id was first accepted

Why one blob: a read of a 54k-behaviour user is one B-tree lookup and one ~1.1 MB copy followed by a zero-copy
``np.frombuffer`` (about a millisecond), against hundreds of milliseconds for one row per event. Per-category
lists are not stored: they are computed from the full sequence with numpy at read time (one masked pass over the
category column, well under a millisecond at 54k). The price is write amplification: every append rewrites the
user's blob (about 1.1 MB at 54k behaviours).

Durability and concurrency: ``journal_mode=WAL`` and ``synchronous=FULL`` (an acknowledged append is fsynced and
survives kill -9 or power loss); every append runs in one ``BEGIN IMMEDIATE`` transaction (read blob, dedupe,
merge, cap, write blob and ids) so threads and processes appending to the same user serialise on the write lock
and nothing is lost or doubled; readers never block (WAL snapshots). ``busy_timeout`` is
``options.command_timeout_s``; waiting longer for the lock raises ``StoreTimeout``. One connection per thread (and
per process: a forked child opens its own). Every sqlite3 error is wrapped in the store error tree
(``sqlite_errors``: StoreTimeout, StoreFull, StoreReadOnly, StoreRequestRefused, else StoreUnavailable; messages
name no path). ``journal_size_limit`` (64 MiB) truncates the WAL file after a checkpoint, so a burst of appends
does not leave it at its high-water mark (it was seen at 457 MB).

Semantics (the same for every backend, pinned by tests/contract):
- ``append(batch) -> (accepted, duplicates)``: the whole batch is validated first (``options.actions``); an invalid
  batch raises ``InvalidEvent`` and stores nothing. Then, in one transaction: per user, events whose ``event_id``
  was first seen less than ``options.dedupe_window_s`` ago, or earlier in the same batch, are duplicates and dropped
  (events without an id never are); the rest are merged in time order (ties: earlier arrival first) and the oldest
  beyond ``options.max_behaviors`` are evicted. Event ids are scoped per user; a duplicate does not extend the
  window. Expired ids are pruned at most once a minute per store object.
- ``read(user, recent, categories, per_category, full)``: the last ``recent`` behaviours; for every requested
  category (each one a key, absent ones empty) its last ``min(per_category, options.per_category)`` behaviours
  among the retained sequence; the full sequence on request; the length. An unknown user reads as empty.
- ``delete(user)`` erases the sequence and the remembered event ids in one transaction.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path

from retrieval.errors import (
    InvalidStoreURL,
    StoreError,
    StoreFull,
    StoreReadOnly,
    StoreRequestRefused,
    StoreTimeout,
    StoreUnavailable,
)
from retrieval.events import Behaviors, EventBatch, empty_behaviors, pack, unpack
from retrieval.store.base import StoreOptions, UserHistory
from retrieval.store.sequence import fresh_rows, history_from_sequence, merge_capped

SCHEMA = """
CREATE TABLE IF NOT EXISTS behaviors (
    user_id TEXT PRIMARY KEY,
    n INTEGER NOT NULL,
    seq BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS event_ids (
    user_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (user_id, event_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS event_ids_seen_at ON event_ids (seen_at);
"""
PAGE_SIZE = 65_536  # big pages: a 1.1 MB blob spans ~17 overflow pages instead of ~280
CACHE_KIB = 65_536  # page cache per connection
PRUNE_EVERY_S = 60.0
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024  # the WAL file is truncated back to this after a checkpoint
ID_CHUNK = 500  # event ids per IN (...) query



@contextmanager
def sqlite_errors(label: str, what: str, timeout_s: float, where: str | None = None) -> Iterator[None]:
    """Wrap sqlite3 errors in the store error tree: a busy/locked database -> StoreTimeout, a full disk -> StoreFull,
    a read-only file -> StoreReadOnly, a value over sqlite's limits -> StoreRequestRefused, anything else ->
    StoreUnavailable. ``label`` says what the file holds (the message names no path; ``where`` carries it)."""
    try:
        yield
    except sqlite3.Error as exc:
        msg = str(exc).lower()
        name = getattr(exc, "sqlite_errorname", "")
        cls: type[StoreError] = StoreUnavailable
        if "locked" in msg or "busy" in msg:
            raise StoreTimeout(
                f"{label}: {what} waited more than {timeout_s} s for the database lock ({exc})", where=where
            ) from exc
        if name == "SQLITE_FULL" or "disk is full" in msg:
            cls = StoreFull
        elif name.startswith("SQLITE_READONLY") or "readonly database" in msg:
            cls = StoreReadOnly
        elif name == "SQLITE_TOOBIG" or "too big" in msg:
            cls = StoreRequestRefused
        raise cls(f"{label}: {what} failed: {exc}", where=where) from exc


class SqliteStore:
    """A BehaviorStore in one SQLite file: one packed blob per user, event ids in their own table."""

    def __init__(self, path: str | os.PathLike[str], options: StoreOptions | None = None) -> None:
        self.options = options or StoreOptions()
        self.path = Path(path)
        if str(path) in {"", ":memory:"}:
            raise InvalidStoreURL(f"sqlite store needs a file path, got {str(path)!r}")
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        self._last_prune = 0.0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"sqlite store: cannot create the directory of its file ({exc.strerror})",
                                   where=str(self.path)) from exc
        with self._errors("open"):
            conn = self._conn()
            conn.executescript(SCHEMA)

    # -- connections --------------------------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreUnavailable("sqlite store: closed", where=str(self.path))
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        conn = sqlite3.connect(
            self.path,
            timeout=self.options.command_timeout_s,
            isolation_level=None,  # autocommit; writes use explicit BEGIN IMMEDIATE
            check_same_thread=False,  # only close() touches it from another thread
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.options.command_timeout_s * 1000)}")
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # effective only while the file is still empty
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        self._local.conn = conn
        self._local.pid = os.getpid()
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    def _errors(self, what: str) -> AbstractContextManager[None]:
        return sqlite_errors("sqlite store", what, self.options.command_timeout_s, str(self.path))

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One BEGIN IMMEDIATE ... COMMIT transaction; rolled back on any error."""
        with self._errors(what):
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    # -- the protocol -------------------------------------------------------------------------------------------

    def append(self, events: EventBatch) -> tuple[int, int]:
        events.validate(actions=self.options.actions)
        if not len(events):
            return 0, 0
        accepted = duplicates = 0
        with self._write("append") as conn:
            now = time.time()
            horizon = now - self.options.dedupe_window_s
            for user, rows in events.by_user():
                seen = self._seen_ids(conn, user, [events.event_id[r] for r in rows.tolist()], horizon)
                keep, new_ids = fresh_rows(rows, events.event_id, seen.__contains__)
                duplicates += len(rows) - len(keep)
                if not len(keep):
                    continue
                row = conn.execute("SELECT seq FROM behaviors WHERE user_id = ?", (user,)).fetchone()
                existing = unpack(row[0]) if row else empty_behaviors()
                seq = merge_capped(existing, events.records(keep), self.options.max_behaviors)
                conn.execute(
                    "INSERT INTO behaviors (user_id, n, seq) VALUES (?, ?, ?) "
                    "ON CONFLICT (user_id) DO UPDATE SET n = excluded.n, seq = excluded.seq",
                    (user, len(seq), pack(seq)),
                )
                if new_ids:
                    conn.executemany(
                        "INSERT OR REPLACE INTO event_ids (user_id, event_id, seen_at) VALUES (?, ?, ?)",
                        [(user, eid, now) for eid in new_ids],
                    )
                accepted += len(keep)
            if now - self._last_prune > PRUNE_EVERY_S:
                conn.execute("DELETE FROM event_ids WHERE seen_at <= ?", (horizon,))
                self._last_prune = now
        return accepted, duplicates

    @staticmethod
    def _seen_ids(conn: sqlite3.Connection, user: str, ids: list[str | None], horizon: float) -> set[str]:
        """The ids among ``ids`` that ``user`` already used within the window."""
        wanted = sorted({e for e in ids if e is not None})
        seen: set[str] = set()
        for start in range(0, len(wanted), ID_CHUNK):
            chunk = wanted[start : start + ID_CHUNK]
            marks = ",".join("?" * len(chunk))
            seen.update(
                r[0]
                for r in conn.execute(
                    f"SELECT event_id FROM event_ids WHERE user_id = ? AND seen_at > ? AND event_id IN ({marks})",
                    (user, horizon, *chunk),
                )
            )
        return seen

    def read(
        self,
        user_id: str,
        *,
        recent: int = 50,
        categories: Sequence[int] = (),
        per_category: int | None = None,
        full: bool = False,
    ) -> UserHistory:
        n = self.options.per_category if per_category is None else min(per_category, self.options.per_category)
        with self._errors("read"):
            row = self._conn().execute("SELECT seq FROM behaviors WHERE user_id = ?", (user_id,)).fetchone()
        seq: Behaviors = unpack(row[0]) if row else empty_behaviors()
        return history_from_sequence(seq, recent=recent, categories=categories, per_category=n, full=full)

    def length(self, user_id: str) -> int:
        with self._errors("length"):
            row = self._conn().execute("SELECT n FROM behaviors WHERE user_id = ?", (user_id,)).fetchone()
        return int(row[0]) if row else 0

    def delete(self, user_id: str) -> bool:
        with self._write("delete") as conn:
            removed = conn.execute("DELETE FROM behaviors WHERE user_id = ?", (user_id,)).rowcount
            removed += conn.execute("DELETE FROM event_ids WHERE user_id = ?", (user_id,)).rowcount
        return removed > 0

    def ping(self, *, writable: bool = False) -> None:
        with self._errors("ping"):
            conn = self._conn()
            conn.execute("SELECT 1").fetchone()
            if writable:  # takes the write lock and lets it go: fails on a read-only file or a held lock
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")

    def close(self) -> None:
        """Close every thread's connection; later calls raise StoreUnavailable."""
        self._closed = True
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with suppress(sqlite3.Error):
                conn.close()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"
