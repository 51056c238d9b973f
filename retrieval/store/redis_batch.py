"""Turn a validated EventBatch into the per-user arguments of the append script (retrieval/store/redis_lua.py).

Vectorised over the whole batch, so that the cost per event stays flat whether a batch holds one user or a
thousand: user ids become integer codes, event ids repeated inside the batch are dropped (first arrival wins, per
user), and two stable sorts (``np.lexsort``) order the records by (user, ts) and by (user, category, ts). Each
user's slice of both orders is one contiguous byte range; the category runs give the ``groups`` argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from retrieval.events import RECORD_SIZE, EventBatch


@dataclass(frozen=True, slots=True)
class UserPart:
    """One user's share of a batch, ready for the append script."""

    user_id: str
    by_time: bytes  # packed records sorted stably by ts
    by_category: bytes  # the same records sorted stably by (category, ts)
    groups: str  # "c1 n1 c2 n2 ...": the category runs of by_category
    event_ids: str | None  # ids of by_time's records joined by "\n" ('' = none); None when no record has one


def split_by_user(events: EventBatch) -> tuple[list[UserPart], int]:
    """(one part per user with at least one fresh event, number of in-batch duplicates)."""
    n = len(events)
    if n == 0:
        return [], 0
    index: dict[str, int] = {}
    codes = np.fromiter((index.setdefault(u, len(index)) for u in events.user_id), dtype=np.int64, count=n)
    has_ids = any(e is not None for e in events.event_id)
    rows = first_arrivals(codes, events.event_id) if has_ids else np.arange(n)
    duplicates = n - len(rows)
    users, ts, cats = codes[rows], events.ts[rows], events.category_id[rows]
    records = events.records(rows)
    by_time = np.lexsort((ts, users))  # lexsort is stable: arrival order on ties
    by_cat = np.lexsort((ts, cats, users))
    time_blob = records[by_time].tobytes()
    cat_blob = records[by_cat].tobytes()
    n_users = len(index)
    bounds = np.searchsorted(users[by_time], np.arange(n_users + 1)).tolist()

    cat_users, cat_sorted = users[by_cat], cats[by_cat]
    change = np.flatnonzero((np.diff(cat_users) != 0) | (np.diff(cat_sorted) != 0)) + 1
    run_start = np.concatenate(([0], change))
    run_len = np.diff(np.concatenate((run_start, [len(rows)]))).tolist()
    run_user = cat_users[run_start]
    run_cat = cat_sorted[run_start].tolist()
    run_bounds = np.searchsorted(run_user, np.arange(n_users + 1)).tolist()

    ids: list[str] | None = None
    if has_ids:
        ids = [events.event_id[r] or "" for r in rows[by_time].tolist()]
    names = list(index)
    parts = []
    for code in range(n_users):
        lo, hi = bounds[code], bounds[code + 1]
        if lo == hi:
            continue  # every event of this user was an in-batch duplicate
        r0, r1 = run_bounds[code], run_bounds[code + 1]
        user_ids = ids[lo:hi] if ids is not None else None
        parts.append(
            UserPart(
                user_id=names[code],
                by_time=time_blob[lo * RECORD_SIZE : hi * RECORD_SIZE],
                by_category=cat_blob[lo * RECORD_SIZE : hi * RECORD_SIZE],
                groups=" ".join(f"{c} {k}" for c, k in zip(run_cat[r0:r1], run_len[r0:r1], strict=True)),
                event_ids="\n".join(user_ids) if user_ids is not None and any(user_ids) else None,
            )
        )
    return parts, duplicates


def first_arrivals(codes: npt.NDArray[np.int64], event_ids: Sequence[str | None]) -> npt.NDArray[np.intp]:
    """Rows to keep: every row without an event id and the first arrival of each (user, id)."""
    present = [e for e in event_ids if e is not None]
    if len(set(present)) == len(present):  # the common case: no id repeats anywhere in the batch
        return np.arange(len(event_ids))
    seen: set[tuple[int, str]] = set()
    keep: list[int] = []
    for row, (code, eid) in enumerate(zip(codes.tolist(), event_ids, strict=True)):
        if eid is None:
            keep.append(row)
        elif (code, eid) not in seen:
            seen.add((code, eid))
            keep.append(row)
    return np.asarray(keep, dtype=np.intp)
