"""Id hashing shared by retrieval and models: item ids -> a fixed number of buckets, so unseen ids still map
somewhere that has an embedding. splitmix64 finaliser, then modulo; vectorised over numpy int64 arrays."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def bucket(ids: npt.ArrayLike, n_buckets: int) -> npt.NDArray[np.int64]:
    """Map non-negative int64 ids to [0, n_buckets). Bucket 0 is never returned: it is kept for padding."""
    if n_buckets < 2:
        raise ValueError(f"n_buckets={n_buckets} must be >= 2 (bucket 0 is padding)")
    x = np.asarray(ids, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        x = x ^ (x >> np.uint64(31))
    return (x % np.uint64(n_buckets - 1)).astype(np.int64) + 1


def user_bucket(user_ids: Sequence[str], n_buckets: int) -> npt.NDArray[np.int64]:
    """Map user id strings to [1, n_buckets) (0 is padding): 63 bits of the id's 8-byte BLAKE2b digest, bucketed.
    Stable across processes and machines (Python's ``hash`` of a str is salted per process); any str hashes, a lone
    surrogate from JSON included."""

    def digest(user: str) -> int:
        raw = hashlib.blake2b(user.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return int.from_bytes(raw, "little") >> 1  # below 2^63: an int64

    return bucket(np.array([digest(u) for u in user_ids], dtype=np.int64), n_buckets)
