"""``memory://``: behaviour sequences in process memory (tests, benchmarks, a single process that may forget).

Layout: ``user_id -> structured array of BEHAVIOR_DTYPE`` (sorted by (ts, arrival), read-only: every append builds
a new array, so a history handed out earlier never changes under its reader) and ``user_id -> {event_id: first
seen (unix seconds)}``. One ``threading.Lock`` serialises appends, deletes and reads; nothing is shared between
processes.

Semantics (the same for every backend, pinned by tests/contract):
- ``append(batch) -> (accepted, duplicates)``: the whole batch is validated first (``options.actions``); an invalid
  batch raises ``InvalidEvent`` and stores nothing. Then per user: events whose ``event_id`` was first seen less
  than ``options.dedupe_window_s`` ago, or earlier in the same batch, are duplicates and dropped (events without an
  id never are); the rest are merged in time order (ties: earlier arrival first) and the oldest beyond
  ``options.max_behaviors`` are evicted. Event ids are scoped per user; a duplicate does not extend the window.
- ``read(user, recent, categories, per_category, full)``: the last ``recent`` behaviours; for every requested
  category (each one a key, absent ones empty) its last ``min(per_category, options.per_category)`` behaviours
  among the retained sequence, computed from the full sequence with numpy; the full sequence on request; the
  length. An unknown user reads as empty.
- ``delete(user)`` erases the sequence and the remembered event ids; ``ping``/``close`` are trivial here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from retrieval.errors import StoreUnavailable
from retrieval.events import Behaviors, EventBatch, empty_behaviors
from retrieval.store.base import StoreOptions, UserHistory
from retrieval.store.sequence import fresh_rows, history_from_sequence, merge_capped


def _seen_since(seen: dict[str, float], horizon: float) -> Callable[[str], bool]:
    """Whether an event id was first seen after ``horizon`` (unix seconds)."""
    return lambda eid: seen.get(eid, -1.0) > horizon


class MemoryStore:
    """A BehaviorStore held in dicts of numpy arrays, guarded by one lock."""

    def __init__(self, options: StoreOptions | None = None) -> None:
        self.options = options or StoreOptions()
        self._lock = threading.Lock()
        self._seqs: dict[str, Behaviors] = {}
        self._seen: dict[str, dict[str, float]] = {}
        self._closed = False

    def append(self, events: EventBatch) -> tuple[int, int]:
        events.validate(actions=self.options.actions)
        accepted = duplicates = 0
        with self._lock:
            self._check_open()
            now = time.time()
            horizon = now - self.options.dedupe_window_s
            for user, rows in events.by_user():
                seen = self._seen.setdefault(user, {})
                if len(seen) > 1024:  # keep the id map from growing without bound
                    for eid in [e for e, t in seen.items() if t <= horizon]:
                        del seen[eid]
                keep, new_ids = fresh_rows(rows, events.event_id, _seen_since(seen, horizon))
                duplicates += len(rows) - len(keep)
                if not len(keep):
                    continue
                for eid in new_ids:
                    seen[eid] = now
                seq = merge_capped(self._seqs.get(user, empty_behaviors()), events.records(keep), self._cap)
                seq.setflags(write=False)
                self._seqs[user] = seq
                accepted += len(keep)
        return accepted, duplicates

    @property
    def _cap(self) -> int:
        return self.options.max_behaviors

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
        with self._lock:
            self._check_open()
            seq = self._seqs.get(user_id, empty_behaviors())
        return history_from_sequence(seq, recent=recent, categories=categories, per_category=n, full=full)

    def length(self, user_id: str) -> int:
        with self._lock:
            self._check_open()
            return len(self._seqs.get(user_id, ()))

    def delete(self, user_id: str) -> bool:
        with self._lock:
            self._check_open()
            had_seq = self._seqs.pop(user_id, None) is not None
            had_ids = bool(self._seen.pop(user_id, None))
            return had_seq or had_ids

    def ping(self, *, writable: bool = False) -> None:
        self._check_open()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._seqs.clear()
            self._seen.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("memory store is closed")
