"""lookup.find: the hashed prefilter and the dense table give exactly np.isin's members, positions ascending;
lookup.IdIndex: the position of every key, the miss value for every other id."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval.lookup import IdIndex, find

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


@settings(max_examples=100)
@given(st.lists(ids, max_size=400, unique=True), st.lists(ids, max_size=60))
def test_id_index_gives_each_keys_position_and_misses_the_rest(keys: list[int], probes: list[int]) -> None:
    index = IdIndex(np.array(keys, dtype=np.int64))
    wanted = np.array(keys + probes, dtype=np.int64)
    where = {key: i for i, key in enumerate(keys)}
    assert index.get(wanted, missing=-7).tolist() == [where.get(int(v), -7) for v in wanted]


def test_id_index_with_colliding_hashes_and_shapes() -> None:
    rng = np.random.default_rng(0)
    keys = rng.choice(2**40, size=5000, replace=False)  # half-full table: long probe chains occur
    index = IdIndex(keys)
    assert index.get(keys).tolist() == list(range(5000))
    grid = np.stack([keys[:6], keys[:6] + 2**41])  # [2,6]: known ids, then ids no key has
    assert index.get(grid).tolist() == [list(range(6)), [-1] * 6]
    with pytest.raises(ValueError, match="distinct"):
        IdIndex([3, 3])
    with pytest.raises(ValueError, match="non-negative"):
        IdIndex([-1])
