"""Which elements of a long int64 array equal one of a few keys, in O(L + K log K) with a hashed prefilter.

``np.searchsorted`` of every one of L = 54,000 history items among K = 500 sorted keys costs L·log K branchy
comparisons (measured 7.5 ms on a loaded two-core machine); a multiplicative hash of every element into a
2^bits bitmap of the keys' hashes rejects almost all non-members in two vectorised passes (0.4 ms), and only the
few survivors are searched exactly. Exact: a survivor is kept only when it equals a key. Keys that span a small
range of values (categories) skip the hashing: a direct table maps each value to its key.
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
