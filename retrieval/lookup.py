"""Exact lookups of int64 ids in numpy without L binary searches: ``find`` (which elements of a long array equal
one of a few keys) and ``IdIndex`` (the position of each id among many known ids).

``find``: which elements of a long int64 array equal one of a few keys, in O(L + K log K) with a hashed prefilter.

``np.searchsorted`` of every one of L = 54,000 history items among K = 500 sorted keys costs L·log K branchy
comparisons (measured 7.5 ms on a loaded two-core machine); a multiplicative hash of every element into a
2^bits bitmap of the keys' hashes rejects almost all non-members in two vectorised passes (0.4 ms), and only the
few survivors are searched exactly. Exact: a survivor is kept only when it equals a key. Keys that span a small
range of values (categories) skip the hashing: a direct table maps each value to its key.

``IdIndex``: distinct non-negative ids -> their positions, by open addressing (linear probing) in a power-of-two
table at most half full. A lookup of L ids is a few vectorised passes over the ids still probing (most are settled
by the first), O(L), where ``np.searchsorted`` into V sorted ids costs L·log V branchy steps (54,000 history items
into a 43,000-item vocabulary: ~5 ms; here well under 1 ms).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
_MULT = np.uint64(0x9E3779B97F4A7C15)
BITS = 18
DENSE_SPAN = 1 << 16  # keys spanning at most this many values are looked up in a direct table


def _hash(values: I64, bits: int) -> npt.NDArray[np.uint64]:
    with np.errstate(over="ignore"):
        out: npt.NDArray[np.uint64] = (values.astype(np.uint64) * _MULT) >> np.uint64(64 - bits)
    return out


def find(haystack: I64, keys: I64, bits: int = BITS) -> tuple[I64, I64]:
    """``keys`` sorted and unique. Returns (key index, haystack position) of every haystack element equal to a
    key, positions ascending."""
    if len(keys) == 0 or len(haystack) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    low, span = int(keys[0]), int(keys[-1]) - int(keys[0]) + 1
    if span <= DENSE_SPAN:  # small ids (categories): a direct table from value to key index
        table = np.full(span, -1, dtype=np.int32)
        table[keys - low] = np.arange(len(keys), dtype=np.int32)
        offset = haystack - low
        inside = (offset >= 0) & (offset < span)
        which = np.full(len(haystack), -1, dtype=np.int32)
        np.take(table, offset, out=which, mode="clip")  # outside values are masked just below
        hit = np.flatnonzero(inside & (which >= 0))
        return which[hit].astype(np.int64), hit.astype(np.int64)
    bitmap = np.zeros(1 << bits, dtype=bool)
    bitmap[_hash(keys, bits)] = True
    maybe = np.flatnonzero(bitmap[_hash(haystack, bits)])
    values = haystack[maybe]
    pos = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
    hit = keys[pos] == values
    return pos[hit].astype(np.int64), maybe[hit].astype(np.int64)


class IdIndex:
    """Exact map from distinct non-negative int64 ``keys`` to their positions 0..n-1 (module docstring)."""

    def __init__(self, keys: npt.ArrayLike) -> None:
        ids = np.asarray(keys, dtype=np.int64).reshape(-1)
        if ids.size and ids.min() < 0:
            raise ValueError("IdIndex keys must be non-negative ids")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("IdIndex keys must be distinct")
        n = len(ids)
        self.bits = max(1, (2 * n - 1).bit_length())  # capacity >= 2n: at most half full
        capacity = 1 << self.bits
        self._keys = np.full(capacity, -1, dtype=np.int64)  # -1: empty slot
        self._values = np.zeros(capacity, dtype=np.int64)
        slot = _hash(ids, self.bits).astype(np.int64)
        pending = np.arange(n, dtype=np.int64)
        while pending.size:  # each round: every still-homeless key tries its current slot; one key wins a free slot
            at = slot[pending]
            free = self._keys[at] < 0
            taken, first = np.unique(at[free], return_index=True)
            winners = pending[free][first]
            self._keys[taken] = ids[winners]
            self._values[taken] = winners
            placed = np.zeros(n, dtype=bool)
            placed[winners] = True
            pending = pending[~placed[pending]]
            slot[pending] = (slot[pending] + 1) & (capacity - 1)  # linear probing: the next slot

    def get(self, ids: npt.ArrayLike, missing: int = -1) -> I64:
        """Positions of ``ids`` (any shape) among the keys; ``missing`` where an id is not a key."""
        values = np.asarray(ids, dtype=np.int64)
        flat = values.reshape(-1)
        mask = (1 << self.bits) - 1
        slot = _hash(flat, self.bits).astype(np.int64)
        key = self._keys[slot]
        hit = key == flat  # an empty slot holds -1, never an id >= 0
        out = np.where(hit, self._values[slot], missing)  # dense first probe: settles most ids
        todo = np.flatnonzero(~hit & (key >= 0))  # an occupied slot of another key: probe the next one
        slot = (slot[todo] + 1) & mask
        while todo.size:
            key = self._keys[slot]
            hit = (key == flat[todo]) & (key >= 0)
            out[todo[hit]] = self._values[slot[hit]]
            go_on = ~hit & (key >= 0)
            todo, slot = todo[go_on], (slot[go_on] + 1) & mask
        return out.reshape(values.shape)
