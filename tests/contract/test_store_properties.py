"""Property test of the store contract: for random batches every backend reads like a pure-Python model.

The model: per user, the accepted events are those whose event id was not seen before (ids scoped per user, the
window never expires here); the sequence is all accepted events stably sorted by ts (ties: arrival order), cut to
the newest ``max_behaviors``; a read takes the last ``recent`` and, per category, the last ``per_category``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrieval.events import EventBatch
from retrieval.store.base import BehaviorStore

TS0 = 1_600_000_000
CAP, PER_CATEGORY, RECENT = 12, 3, 5

event = st.tuples(
    st.integers(0, 1),  # user
    st.integers(0, 6),  # ts offset: many ties
    st.integers(0, 5),  # category
    st.integers(0, 3),  # action
    st.one_of(st.none(), st.sampled_from([f"e{i}" for i in range(8)])),  # event id, often repeated
)
batches = st.lists(st.lists(event, min_size=0, max_size=12), min_size=1, max_size=4)
Row = tuple[int, int, int, int]  # ts, item, category, action


def model(all_batches: list[list[tuple[Any, ...]]]) -> tuple[dict[int, list[Row]], list[tuple[int, int]]]:
    """Expected sequence per user and the (accepted, duplicates) of each append."""
    seen: dict[int, set[str]] = {0: set(), 1: set()}
    accepted: dict[int, list[Row]] = {0: [], 1: []}
    counts = []
    item = 0
    for b in all_batches:
        acc = dup = 0
        for user, ts, cat, action, eid in b:
            item += 1
            if eid is not None and eid in seen[user]:
                dup += 1
                continue
            if eid is not None:
                seen[user].add(eid)
            accepted[user].append((ts, item, cat, action))
            acc += 1
        counts.append((acc, dup))
    return {u: sorted(rows, key=lambda r: r[0])[-CAP:] for u, rows in accepted.items()}, counts


def as_rows(arr: Any) -> list[Row]:
    return [(int(r["ts"]) - TS0, int(r["item_id"]), int(r["category_id"]), int(r["action"])) for r in arr]


@pytest.fixture
def capped_store(make_store: Callable[..., BehaviorStore]) -> BehaviorStore:
    """One store for all examples of a test (each example uses fresh users)."""
    return make_store(max_behaviors=CAP, per_category=PER_CATEGORY)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(all_batches=batches, many_categories=st.booleans())
def test_store_reads_like_the_reference_model(
    capped_store: BehaviorStore, all_batches: list[list[tuple[Any, ...]]], many_categories: bool
) -> None:
    store = capped_store
    users = [f"p-{uuid.uuid4().hex[:10]}", f"q-{uuid.uuid4().hex[:10]}"]
    expected, counts = model(all_batches)
    item = 0
    for b, count in zip(all_batches, counts, strict=True):
        cols = EventBatch.from_columns(
            user_id=[users[e[0]] for e in b],
            item_id=list(range(item + 1, item + 1 + len(b))),
            category_id=[e[2] for e in b],
            ts=[TS0 + e[1] for e in b],
            action=[e[3] for e in b],
            event_id=[e[4] for e in b],
        )
        item += len(b)
        assert store.append(cols) == count
    categories = list(range(20)) if many_categories else [0, 2, 5, 9]
    for u, user in enumerate(users):
        want = expected[u]
        h = store.read(user, recent=RECENT, categories=categories, full=True)
        assert as_rows(h.full) == want
        assert as_rows(h.recent) == want[-RECENT:]
        assert h.length == len(want) == store.length(user)
        assert set(h.by_category) == set(categories)
        for cat in categories:
            assert as_rows(h.by_category[cat]) == [r for r in want if r[2] == cat][-PER_CATEGORY:]
            assert np.all(np.diff(h.by_category[cat]["ts"]) >= 0)
