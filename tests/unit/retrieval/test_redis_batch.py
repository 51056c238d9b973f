"""split_by_user (the pure half of RedisStore.append): each user's records in (ts, arrival) order and in
(category, ts, arrival) order, the category runs, in-batch duplicates per user, and the event ids that go along."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval.events import EventBatch, unpack
from retrieval.store.redis_batch import split_by_user

TS0 = 1_600_000_000

rows_strategy = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),  # user
        st.integers(0, 5),  # ts offset (many ties)
        st.integers(0, 3),  # category
        st.one_of(st.none(), st.sampled_from(["x", "y", "z", "w"])),  # event id
    ),
    max_size=40,
)


def make_batch(rows: list[tuple[str, int, int, str | None]]) -> EventBatch:
    return EventBatch.from_columns(
        user_id=[r[0] for r in rows],
        item_id=list(range(len(rows))),  # the item id is the arrival index
        category_id=[r[2] for r in rows],
        ts=[TS0 + r[1] for r in rows],
        event_id=[r[3] for r in rows],
    )


@settings(max_examples=200, deadline=None)
@given(rows_strategy)
def test_parts_match_a_plain_reference(rows: list[tuple[str, int, int, str | None]]) -> None:
    parts, duplicates = split_by_user(make_batch(rows))
    # reference: per user, keep the first arrival of each id, then sort (stable) by ts / by (category, ts)
    kept: dict[str, list[tuple[int, int, int, str | None]]] = {}
    seen: set[tuple[str, str]] = set()
    for i, (user, ts, cat, eid) in enumerate(rows):
        if eid is not None and (user, eid) in seen:
            continue
        if eid is not None:
            seen.add((user, eid))
        kept.setdefault(user, []).append((i, ts, cat, eid))
    assert duplicates == len(rows) - sum(len(v) for v in kept.values())
    assert [p.user_id for p in parts] == list(kept)  # first-seen user order
    for part in parts:
        mine = kept[part.user_id]
        by_time = sorted(mine, key=lambda r: r[1])
        by_cat = sorted(mine, key=lambda r: (r[2], r[1]))
        assert unpack(part.by_time)["item_id"].tolist() == [r[0] for r in by_time]
        assert unpack(part.by_category)["item_id"].tolist() == [r[0] for r in by_cat]
        runs = [(c, sum(1 for r in mine if r[2] == c)) for c in sorted({r[2] for r in mine})]
        assert part.groups == " ".join(f"{c} {n}" for c, n in runs)
        if all(r[3] is None for r in mine):
            assert part.event_ids is None
        else:
            assert part.event_ids is not None
            assert part.event_ids.split("\n") == [r[3] or "" for r in by_time]


def test_records_carry_every_field() -> None:
    batch = EventBatch.from_columns(
        user_id=["u", "u"], item_id=[2**62, 7], category_id=[2**31 - 1, 0], ts=[TS0 + 9, TS0 + 1], action=[3, 1]
    )
    (part,), duplicates = split_by_user(batch)
    assert duplicates == 0
    recs = unpack(part.by_time)
    assert recs.tolist() == [(TS0 + 1, 7, 0, 1), (TS0 + 9, 2**62, 2**31 - 1, 3)]
    assert part.groups == f"0 1 {2**31 - 1} 1"
    assert np.array_equal(np.sort(unpack(part.by_category)["item_id"]), np.sort(recs["item_id"]))


def test_empty_batch() -> None:
    assert split_by_user(make_batch([])) == ([], 0)
