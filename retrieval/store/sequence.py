"""Pure operations on one user's sequence that every backend needs: dedupe, merge + cap, and slicing a read.

Kept apart from the backends so that memory, sqlite (and any backend that holds the full sequence) apply the very
same rules, and the contract suite's reference model has one implementation to be compared with:

- ``fresh_rows``: which rows of a user's part of a batch are new, given the event ids already seen (an id seen
  earlier in the same batch is a duplicate too; rows without an event id are always new);
- ``merge_capped``: merge new records into the sorted sequence (ties: earlier arrival first) and evict the oldest
  beyond the cap;
- ``history_from_sequence``: build a ``UserHistory`` from the full sequence. Per-category lists are computed at read
  time with numpy (see ``_last_per_category``): 0.3 ms for 10 categories on a 54k-behaviour user, so a backend
  that reads the full blob anyway need not store them separately.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from retrieval.events import MAX_CATEGORY_ID, Behaviors, empty_behaviors, merge_in_time_order
from retrieval.store.base import UserHistory

FEW_CATEGORIES = 16  # up to this many categories, one equality pass each beats sorting


def fresh_rows(
    rows: npt.NDArray[np.intp], event_ids: Sequence[str | None], seen: Callable[[str], bool]
) -> tuple[npt.NDArray[np.intp], list[str]]:
    """(rows to store, their distinct event ids): drop rows whose id ``seen`` knows or that repeat in ``rows``."""
    keep: list[int] = []
    new_ids: list[str] = []
    in_batch: set[str] = set()
    for row in rows.tolist():
        eid = event_ids[row]
        if eid is None:
            keep.append(row)
        elif eid not in in_batch and not seen(eid):
            in_batch.add(eid)
            keep.append(row)
            new_ids.append(eid)
        else:
            in_batch.add(eid)
    return np.asarray(keep, dtype=np.intp), new_ids


def merge_capped(existing: Behaviors, new: Behaviors, max_behaviors: int) -> Behaviors:
    """``existing`` (sorted) with ``new`` merged in time order, keeping only the newest ``max_behaviors``."""
    merged = merge_in_time_order(existing, new)
    return merged[-max_behaviors:] if len(merged) > max_behaviors else merged


def check_read_args(recent: int, per_category: int) -> None:
    """Refuse negative sizes with a message naming the argument."""
    if recent < 0:
        raise ValueError(f"recent={recent} must be >= 0")
    if per_category < 0:
        raise ValueError(f"per_category={per_category} must be >= 0")


def _tail(arr: Behaviors, n: int) -> Behaviors:
    return arr[len(arr) - n :] if 0 < n < len(arr) else (arr if n > 0 else arr[:0])


def _last_per_category(seq: Behaviors, wanted: list[int], n: int) -> dict[int, Behaviors]:
    """Each wanted category -> its last ``n`` records in ``seq``.

    Few categories: one equality pass per category over a contiguous copy of the column. Many: one ``isin`` pass,
    a stable sort of the matching rows by category and a binary search per category (O(L + m log m) instead of
    O(L * k)); measured at L=54k: 10 categories 0.3 ms by passes, 500 categories 3 ms by sorting against 14 ms.
    """
    if not wanted or not len(seq) or n <= 0:
        return {cat: empty_behaviors() for cat in wanted}
    cats = np.ascontiguousarray(seq["category_id"])
    if len(wanted) <= FEW_CATEGORIES:
        out: dict[int, Behaviors] = {}
        for cat in wanted:
            rows = np.flatnonzero(cats == cat) if 0 <= cat <= MAX_CATEGORY_ID else np.empty(0, dtype=np.intp)
            out[cat] = seq[rows[len(rows) - n :] if len(rows) > n else rows]
        return out
    keys = np.asarray(wanted, dtype=np.int64)
    rows = np.flatnonzero(np.isin(cats, keys))
    order = np.argsort(cats[rows], kind="stable")
    sorted_cats, sorted_rows = cats[rows][order], rows[order]
    lo = np.searchsorted(sorted_cats, keys, side="left").tolist()
    hi = np.searchsorted(sorted_cats, keys, side="right").tolist()
    return {cat: seq[sorted_rows[max(a, b - n) : b]] for cat, a, b in zip(wanted, lo, hi, strict=True)}


def history_from_sequence(
    seq: Behaviors, *, recent: int, categories: Sequence[int], per_category: int, full: bool
) -> UserHistory:
    """Slice a read out of the full sequence (oldest first): last ``recent``, last ``per_category`` per category."""
    check_read_args(recent, per_category)
    wanted = list(dict.fromkeys(int(c) for c in categories))
    by_category = _last_per_category(seq, wanted, per_category)
    return UserHistory(
        length=len(seq),
        recent=_tail(seq, recent),
        by_category=by_category,
        full=seq if full else None,
    )
