"""lookup.find: the hashed prefilter and the dense table give exactly np.isin's members, positions ascending."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval.lookup import find

ids = st.one_of(st.integers(min_value=0, max_value=40), st.integers(min_value=0, max_value=2**62))


@settings(max_examples=200)
@given(st.lists(ids, max_size=300), st.lists(ids, max_size=30))
def test_find_equals_isin(haystack: list[int], keys: list[int]) -> None:
    h = np.array(haystack, dtype=np.int64)
    k = np.unique(np.array(keys, dtype=np.int64))
    which, position = find(h, k)
    assert position.tolist() == np.flatnonzero(np.isin(h, k)).tolist()
    assert np.array_equal(k[which], h[position])


def test_both_paths_agree_on_a_large_history() -> None:
    rng = np.random.default_rng(0)
    h = rng.integers(0, 50_000, 54_000)
    k = np.unique(rng.integers(0, 50_000, 500))
    dense = find(h, k)  # keys span < 2^16 values: the direct table
    hashed = find(h * 2**20, k * 2**20)  # the same sets spread over a wide range: the hashed prefilter
    assert np.array_equal(dense[0], hashed[0]) and np.array_equal(dense[1], hashed[1])
