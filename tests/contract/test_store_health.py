"""``ping(writable=True)`` on every backend: a store that takes writes answers it (the fault suite, tests/faults,
covers the stores that do not: a full Redis, a read-only replica)."""

from __future__ import annotations

from retrieval.store.base import BehaviorStore


def test_a_healthy_store_answers_both_pings_and_writes_nothing(store: BehaviorStore) -> None:
    store.ping()
    store.ping(writable=True)
    assert store.length("nobody-at-all") == 0
    history = store.read("nobody-at-all", recent=5, full=True)
    assert history.length == 0 and history.full is not None and len(history.full) == 0
