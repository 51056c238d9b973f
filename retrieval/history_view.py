"""One user's history as read for one request, and what its several readers derive from it, computed once.

The GSU (hard, soft and hybrid search), the history statistics and the feature building all read the same
54,000-behaviour sequence and need the same derived arrays: contiguous columns (the packed records are strided),
the item vocabulary rows of every behaviour, the behaviours grouped by item row and by category, where the
candidates' items occur. ``HistoryView`` computes each on first use and keeps it for the request's other readers.
Every function that takes a history accepts a view or a plain BEHAVIOR_DTYPE array (``HistoryView.of`` wraps the
latter) and returns the same result either way; a view is meant for one request (one thread), not to be shared.

Also here: ``Groups`` (positions grouped by an integer key) and ``group``, the grouping every reader uses.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from retrieval.events import BEHAVIOR_DTYPE, Behaviors
from retrieval.lookup import find
from retrieval.vocabulary import Vocabulary

I64 = npt.NDArray[np.int64]
T = TypeVar("T")


def stable_argsort_small(values: npt.NDArray[np.integer[Any]], max_value: int) -> npt.NDArray[np.intp]:
    """Stable argsort of non-negative integers below ``max_value`` by 16-bit LSD radix passes.

    numpy sorts uint16 stably with a radix sort (~0.2 ms for 54k values) but int32/int64 with timsort (~3 ms):
    two uint16 passes cover values below 2^32, which is what history grouping needs."""
    order = np.argsort((values & 0xFFFF).astype(np.uint16), kind="stable")
    shift = 16
    while (max_value - 1) >> shift:
        digit = ((values[order] >> shift) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digit, kind="stable")]
        shift += 16
    return order


@dataclass(frozen=True)
class Groups:
    """History positions grouped by a key: ``order[starts[g]:starts[g]+counts[g]]`` are group g's positions in
    ascending (oldest first) order; ``keys`` ascending."""

    order: npt.NDArray[np.intp]
    keys: I64
    starts: I64
    counts: I64

    def find(self, keys: npt.ArrayLike) -> I64:
        """The group of each of ``keys`` (-1 where no behaviour has that key)."""
        wanted = np.asarray(keys, dtype=np.int64)
        if len(self.keys) == 0:
            return np.full(wanted.shape, -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.keys, wanted), len(self.keys) - 1)
        return np.where(self.keys[pos] == wanted, pos, -1).astype(np.int64)


def group(values: I64, max_value: int) -> Groups:
    """Positions of ``values`` (non-negative, below ``max_value``) grouped by value."""
    order = stable_argsort_small(values, max_value)
    ordered = values[order]
    if len(ordered) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Groups(order, empty, empty, empty)
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    counts = np.diff(np.append(starts, len(ordered)))
    return Groups(order, ordered[starts].astype(np.int64), starts.astype(np.int64), counts.astype(np.int64))


class HistoryView:
    """A history (BEHAVIOR_DTYPE, oldest first) with its derived arrays memoised (module docstring)."""

    def __init__(self, records: Behaviors) -> None:
        if not isinstance(records, np.ndarray) or records.dtype != BEHAVIOR_DTYPE or records.ndim != 1:
            raise ValueError("history must be a 1-D structured array of retrieval.events.BEHAVIOR_DTYPE")
        self.records = records
        self._memo: dict[Hashable, Any] = {}

    @classmethod
    def of(cls, history: Behaviors | HistoryView) -> HistoryView:
        return history if isinstance(history, HistoryView) else cls(history)

    def __len__(self) -> int:
        return len(self.records)

    def memo(self, key: Hashable, make: Callable[[], T]) -> T:
        """``make()`` once per key for this view (keys name what is derived, and from which tables)."""
        if key not in self._memo:
            self._memo[key] = make()
        value: T = self._memo[key]
        return value

    @cached_property
    def items(self) -> I64:
        return np.ascontiguousarray(self.records["item_id"]).astype(np.int64, copy=False)

    @cached_property
    def categories(self) -> I64:
        return np.ascontiguousarray(self.records["category_id"]).astype(np.int64)

    @cached_property
    def ts(self) -> I64:
        return np.ascontiguousarray(self.records["ts"]).astype(np.int64, copy=False)

    @cached_property
    def actions(self) -> npt.NDArray[np.uint8]:
        return np.ascontiguousarray(self.records["action"])

    def item_rows(self, vocab: Vocabulary) -> I64:
        """The vocabulary row of every behaviour's item."""
        return self.memo(("item_rows", vocab), lambda: vocab.rows(self.items))

    def item_groups(self, vocab: Vocabulary) -> Groups:
        """The behaviours grouped by item vocabulary row (rows ascending: the history's distinct items)."""
        return self.memo(("item_groups", vocab), lambda: group(self.item_rows(vocab), vocab.size))

    @cached_property
    def category_groups(self) -> Groups:
        """The behaviours grouped by category id."""
        cats = self.categories
        return group(cats, int(cats.max()) + 1 if len(cats) else 1)

    def find_categories(self, keys: I64) -> tuple[I64, I64]:
        """(key index, position) of every behaviour whose category is one of the sorted unique ``keys``: read off
        the category grouping when a search has already made it (positions ascending within each key), else
        lookup.find over the whole column (positions ascending)."""
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        if "category_groups" not in self.__dict__:  # not made yet: one pass of find costs less than the grouping
            return find(self.categories, keys)
        groups = self.category_groups
        g = groups.find(keys)
        which = np.flatnonzero(g >= 0)
        g = g[which]
        counts = groups.counts[g]
        starts = np.repeat(groups.starts[g] - (np.cumsum(counts) - counts), counts)  # per match: start − offset
        position = groups.order[starts + np.arange(int(counts.sum()))]
        return np.repeat(which, counts).astype(np.int64), position.astype(np.int64)

    def find_items(self, keys: I64) -> tuple[I64, I64]:
        """lookup.find(items, keys) for sorted unique ``keys``: (key index, position) of every behaviour whose item
        is one of the keys, positions ascending."""
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        return self.memo(("find_items", keys.tobytes()), lambda: find(self.items, keys))
