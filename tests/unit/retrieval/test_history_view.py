"""HistoryView: a request's memoised view of one history. Its groupings are exact, and every search returns the
same result whether it is given the plain array or a view shared with other searches of the request."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.events import BEHAVIOR_DTYPE
from retrieval.gsu import ExactSearch, HardSearch, SoftSearch
from retrieval.gsu_hybrid import HybridSearch
from retrieval.history_view import HistoryView, group
from retrieval.item_index import ItemIndex
from retrieval.lookup import find
from retrieval.vocabulary import Vocabulary


def records(n: int, seed: int = 0, n_items: int = 300, n_cats: int = 70_000) -> np.ndarray:
    """n behaviours, oldest first; categories above 2^16 so that grouping needs both radix passes."""
    rng = np.random.default_rng(seed)
    h = np.zeros(n, dtype=BEHAVIOR_DTYPE)
    h["ts"] = np.sort(rng.integers(1_600_000_000, 1_700_000_000, n))
    h["item_id"] = rng.integers(0, n_items, n)
    h["category_id"] = rng.choice(np.array([3, 65_536 + 3, n_cats - 1, 17]), n)
    h["action"] = rng.integers(0, 4, n)
    return h


def test_group_lists_every_value_s_positions_oldest_first() -> None:
    values = np.random.default_rng(1).integers(0, 70_000, 2_000).astype(np.int64)
    groups = group(values, 70_000)
    assert groups.keys.tolist() == np.unique(values).tolist()
    for g, key in enumerate(groups.keys.tolist()):
        members = groups.order[groups.starts[g] : groups.starts[g] + groups.counts[g]]
        assert members.tolist() == np.flatnonzero(values == key).tolist()
    assert groups.find(np.array([groups.keys[3], 70_001, -5])).tolist() == [3, -1, -1]
    empty = group(np.zeros(0, dtype=np.int64), 1)
    assert len(empty.keys) == 0 and empty.find(np.array([0])).tolist() == [-1]


def test_view_columns_groupings_and_lookups_are_the_plain_ones_and_memoised() -> None:
    h = records(500)
    view = HistoryView.of(h)
    assert HistoryView.of(view) is view and len(view) == 500
    assert view.items.tolist() == h["item_id"].tolist() and view.ts.tolist() == h["ts"].tolist()
    assert view.category_groups is view.category_groups
    cats = h["category_id"].astype(np.int64)
    assert view.category_groups.keys.tolist() == np.unique(cats).tolist()
    vocab = Vocabulary.fit(h["item_id"][:400].astype(np.int64), overflow=8)
    assert view.item_rows(vocab).tolist() == vocab.rows(h["item_id"]).tolist()
    assert view.item_groups(vocab) is view.item_groups(vocab)
    keys = np.array([5, 17, 250], dtype=np.int64)
    for got, want in zip(view.find_items(keys), find(h["item_id"].astype(np.int64), keys), strict=True):
        assert got.tolist() == want.tolist()
    with pytest.raises(ValueError, match="BEHAVIOR_DTYPE"):
        HistoryView(np.zeros(3, dtype=np.int64))


def test_find_categories_is_find_before_and_after_the_grouping_exists() -> None:
    """Before a search has grouped the categories it is lookup.find; after, it reads the grouping: the same
    (key, position) pairs, grouped by key."""
    h = records(800, seed=3)
    cats = h["category_id"].astype(np.int64)
    keys = np.array([3, 17, 99, 65_536 + 3], dtype=np.int64)  # sorted; 99 occurs nowhere
    want = find(cats, keys)
    view = HistoryView(h)
    before = view.find_categories(keys)
    assert [a.tolist() for a in before] == [w.tolist() for w in want]
    assert "category_groups" not in view.__dict__  # looking up did not make the grouping
    HardSearch(8).positions(view, h["item_id"][:5], cats[:5])  # a search groups the categories
    which, position = view.find_categories(keys)
    assert sorted(zip(which.tolist(), position.tolist(), strict=True)) == sorted(
        zip(want[0].tolist(), want[1].tolist(), strict=True))
    assert which.tolist() == sorted(which.tolist())  # grouped by key
    empty = HistoryView(h[:0])
    _ = empty.category_groups
    assert [len(a) for a in empty.find_categories(keys)] == [0, 0]


@pytest.mark.parametrize("seed", [0, 1])
def test_searches_give_the_same_result_on_a_shared_view(seed: int) -> None:
    h = records(3_000, seed, n_items=2_000)
    vocab = Vocabulary.fit(h["item_id"].astype(np.int64), overflow=16)
    rng = np.random.default_rng(seed + 10)
    keys = rng.standard_normal((vocab.size, 8)).astype(np.float32)
    index = ItemIndex.build(keys, n_clusters=8, seed=seed, vocab=vocab)
    items = np.concatenate([h["item_id"][:20], rng.integers(0, 2_500, 30)]).astype(np.int64)
    cats = rng.choice(h["category_id"], len(items)).astype(np.int64)
    searches = [HardSearch(16), ExactSearch(index, 16), SoftSearch(index, 16, 4, exact_below=100),
                HybridSearch(SoftSearch(index, 16, 4, exact_below=100), 16, 4)]  # fmt: skip
    view = HistoryView(h)  # shared by every search, as one request shares it
    for search in searches:
        plain, shared = search.search(h, items, cats), search.search(view, items, cats)
        for name in ("index", "item_id", "category_id", "ts", "action", "mask"):
            assert np.array_equal(getattr(plain, name), getattr(shared, name)), (type(search).__name__, name)
