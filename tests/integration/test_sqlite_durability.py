"""The sqlite store keeps every acknowledged append through kill -9, and its failures surface as store errors.

A writer subprocess appends batches in a loop and prints each batch number after ``append`` returned; the test
kills it with SIGKILL mid-stream, reopens the file and checks that every acknowledged batch is there, complete and
once (batches are atomic: a batch is either entirely stored or not at all), and that their event ids survived too.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from retrieval.errors import StoreTimeout, StoreUnavailable
from retrieval.events import EventBatch
from retrieval.store.base import StoreOptions
from retrieval.store.sqlite import SqliteStore

PER_BATCH = 5
USERS = 3
TS0 = 1_600_000_000

WRITER = textwrap.dedent(
    f"""
    import sys
    from retrieval.events import EventBatch
    from retrieval.store.sqlite import SqliteStore

    store = SqliteStore(sys.argv[1])
    k = 0
    while True:
        items = [k * 10 + j for j in range({PER_BATCH})]
        store.append(EventBatch.from_columns(
            user_id=[f"u{{(k + j) % {USERS}}}" for j in range({PER_BATCH})],
            item_id=items,
            category_id=[k % 11] * {PER_BATCH},
            ts=[{TS0} + (k * 7) % 1000] * {PER_BATCH},
            event_id=[f"b{{k}}-{{j}}" for j in range({PER_BATCH})],
        ))
        print(k, flush=True)
        k += 1
    """
)


def batch_of(k: int) -> EventBatch:
    """The batch the writer sends as number ``k``."""
    return EventBatch.from_columns(
        user_id=[f"u{(k + j) % USERS}" for j in range(PER_BATCH)],
        item_id=[k * 10 + j for j in range(PER_BATCH)],
        category_id=[k % 11] * PER_BATCH,
        ts=[TS0 + (k * 7) % 1000] * PER_BATCH,
        event_id=[f"b{k}-{j}" for j in range(PER_BATCH)],
    )


def test_acknowledged_appends_survive_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "durable" / "b.db"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    acked: list[int] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            acked.append(int(line))
            if len(acked) >= 300:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate(timeout=30)
    assert len(acked) >= 300, f"writer stopped early: {err[-2000:]}"
    assert proc.returncode == -signal.SIGKILL
    assert acked == list(range(len(acked)))

    store = SqliteStore(db)
    try:
        stored: list[int] = []
        for u in range(USERS):
            full = store.read(f"u{u}", full=True).full
            assert full is not None and store.length(f"u{u}") == len(full)
            stored += full["item_id"].tolist()
        assert len(stored) == len(set(stored)), "an event was stored twice"
        batches = sorted({i // 10 for i in stored})
        assert batches == list(range(len(batches))), "a batch in the middle is missing"
        assert len(batches) >= len(acked), "an acknowledged batch was lost"
        assert len(stored) == len(batches) * PER_BATCH, "a batch was stored partially"
        # the event ids were made durable with the events: resending acknowledged batches changes nothing
        for k in (0, len(acked) // 2, acked[-1]):
            assert store.append(batch_of(k)) == (0, PER_BATCH)
        assert sum(store.length(f"u{u}") for u in range(USERS)) == len(stored)
    finally:
        store.close()


def test_settings_are_wal_and_synchronous_full(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "b.db")
    try:
        store.append(batch_of(0))
        conn = store._conn()  # the store's own connection: synchronous is per connection
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA journal_size_limit").fetchone()[0] == 64 * 1024 * 1024  # the WAL is cut back
    finally:
        store.close()


def test_a_held_write_lock_times_out_as_store_timeout(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    store = SqliteStore(db, StoreOptions(command_timeout_s=0.2))
    store.append(batch_of(0))
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreTimeout, match=r"waited more than 0\.2 s"):
            store.append(batch_of(1))
        assert store.length("u0") == 2  # readers are not blocked by a writer (WAL)
        with pytest.raises(StoreTimeout):
            store.delete("u0")
        other.execute("ROLLBACK")
        assert store.append(batch_of(1)) == (PER_BATCH, 0)
    finally:
        other.close()
        store.close()


def test_a_file_that_is_not_a_database_is_store_unavailable(tmp_path: Path) -> None:
    db = tmp_path / "junk.db"
    db.write_bytes(b"this is not a sqlite file at all" * 200)
    with pytest.raises(StoreUnavailable, match="not a database") as info:
        SqliteStore(db)
    assert "junk.db" not in str(info.value) and str(info.value.where).endswith("junk.db")  # the path: logs only


def test_a_path_that_cannot_be_created_is_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreUnavailable, match="cannot create the directory"):
        SqliteStore(blocker / "sub" / "b.db")


def test_a_closed_store_refuses_work(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "b.db")
    store.close()
    for call in (store.ping, lambda: store.length("u"), lambda: store.append(batch_of(0))):
        with pytest.raises(StoreUnavailable, match="closed"):
            call()
