"""Exact id vocabularies with a hashed overflow: the rows of an embedding table, sized to the data.

Row 0 is padding. Rows ``1 .. n_known`` belong to the ids seen in training, one row each (no collisions); an id
outside the vocabulary (a new item) falls into one of ``overflow`` hashed rows after them, so it still has an
embedding, shared with other unseen ids. A pure hashed table (the previous scheme: 50,000 items in 32,768 buckets
left 78% of them sharing a row) is the special case ``n_known = 0``.

On disk: one ``.npy`` file holding the sorted known ids (int64) and a JSON-able ``overflow`` count kept by the
caller (the model config).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import numpy.typing as npt

from retrieval.hashing import bucket
from retrieval.lookup import IdIndex

I64 = npt.NDArray[np.int64]


class VocabularyError(ValueError):
    """A vocabulary that cannot be built or loaded; the message names the file or argument and the rule."""


class Vocabulary:
    """Sorted known ids -> rows 1..n_known; any other id -> one of ``overflow`` hashed rows after them."""

    def __init__(self, known: npt.ArrayLike, overflow: int) -> None:
        ids = np.asarray(known, dtype=np.int64).reshape(-1)
        if overflow < 1:
            raise VocabularyError(f"overflow={overflow} must be >= 1 (unseen ids need a row)")
        if ids.size and (ids.min() < 0 or np.any(ids[1:] <= ids[:-1])):
            raise VocabularyError("known ids must be non-negative, sorted and unique")
        self.known = ids
        self.overflow = int(overflow)

    @classmethod
    def fit(cls, ids: npt.ArrayLike, overflow: int | None = None, *, min_count: int = 1) -> Vocabulary:
        """The ids that occur at least ``min_count`` times; ``overflow`` defaults to max(64, n_known // 8)."""
        values, counts = np.unique(np.asarray(ids, dtype=np.int64).reshape(-1), return_counts=True)
        known = values[counts >= min_count]
        return cls(known, overflow if overflow is not None else max(64, len(known) // 8))

    @cached_property
    def _index(self) -> IdIndex:
        """The known ids' hash index, built on first use (a lookup is O(n), not n binary searches)."""
        return IdIndex(self.known)

    @property
    def n_known(self) -> int:
        return int(self.known.size)

    @property
    def size(self) -> int:
        """Rows of a table indexed by this vocabulary: padding + known + overflow."""
        return 1 + self.n_known + self.overflow

    def rows(self, ids: npt.ArrayLike) -> I64:
        """Table rows of ``ids`` (any shape): 1 + position for known ids, a hashed overflow row otherwise."""
        values = np.asarray(ids, dtype=np.int64)
        if self.n_known == 0:
            return bucket(values, self.overflow + 1)
        out = self._index.get(values) + 1  # 0 where unknown
        miss = out == 0
        if miss.any():
            out[miss] = self.n_known + bucket(values[miss], self.overflow + 1)  # in [n_known + 1, n_known + overflow]
        return out

    def is_known(self, ids: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        rows = self.rows(ids)
        out: npt.NDArray[np.bool_] = rows <= self.n_known
        return out

    def collision_rate(self, ids: npt.ArrayLike) -> float:
        """Share of the distinct ``ids`` whose row is shared with another of them (0 when every id is known)."""
        distinct = np.unique(np.asarray(ids, dtype=np.int64))
        if distinct.size == 0:
            return 0.0
        _, inverse, counts = np.unique(self.rows(distinct), return_inverse=True, return_counts=True)
        return float(np.mean(counts[inverse] > 1))

    def save(self, path: str | Path) -> Path:
        out = Path(path)
        np.save(out, self.known, allow_pickle=False)
        return out

    @classmethod
    def load(cls, path: str | Path, overflow: int) -> Vocabulary:
        path = Path(path)
        if not path.is_file():
            raise VocabularyError(f"{path}: missing vocabulary file")
        try:
            known = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise VocabularyError(f"{path}: unreadable .npy file ({exc})") from exc
        if known.dtype != np.int64 or known.ndim != 1:
            raise VocabularyError(f"{path}: {known.dtype} {known.shape}; must be a 1-D int64 array of sorted ids")
        try:
            return cls(known, overflow)
        except VocabularyError as exc:
            raise VocabularyError(f"{path}: {exc}") from exc
