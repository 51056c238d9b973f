"""GSU searches on real Faiss indexes: hard (category), exact (brute force) and soft (IVF), and recall@K."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.events import BEHAVIOR_DTYPE, MIN_TS
from retrieval.gsu import (
    ExactSearch,
    HardSearch,
    Retrieved,
    SoftSearch,
    gather,
    recall_at_k,
    stable_argsort_small,
)
from retrieval.gsu_expand import _by_row_score_position, _distinct_rows
from retrieval.hashing import bucket
from retrieval.item_index import ItemIndex

N_BUCKETS = 4096


def history_of(items: list[int], cats: list[int] | None = None) -> np.ndarray:
    h = np.zeros(len(items), dtype=BEHAVIOR_DTYPE)
    h["ts"] = MIN_TS + 10 * np.arange(len(items))
    h["item_id"] = items
    h["category_id"] = cats if cats is not None else [i % 7 for i in items]
    h["action"] = np.arange(len(items)) % 4
    return h


def hand_index(vectors: dict[int, list[float]], queries: dict[int, list[float]] | None = None) -> ItemIndex:
    """An ItemIndex whose listed items have exactly the given key (and query) vectors; one cluster per vector
    direction is not needed here, so two trivial clusters are used."""
    d = len(next(iter(vectors.values())))
    keys = np.zeros((N_BUCKETS, d), dtype=np.float32)
    qs = np.zeros((N_BUCKETS, d), dtype=np.float32)
    ids = list(vectors) + [i for i in (queries or {}) if i not in vectors]
    assert len(set(bucket(ids, N_BUCKETS).tolist())) == len(ids), "pick item ids with distinct buckets"
    for item, vec in vectors.items():
        keys[bucket([item], N_BUCKETS)[0]] = vec
        qs[bucket([item], N_BUCKETS)[0]] = vec
    for item, vec in (queries or {}).items():
        qs[bucket([item], N_BUCKETS)[0]] = vec
    centroids = np.eye(2, d, dtype=np.float32)
    cluster_of = np.argmax(keys @ centroids.T, axis=1).astype(np.int32)
    return ItemIndex(keys, qs, centroids, cluster_of)


def rows(r: Retrieved) -> list[list[int]]:
    return [[int(i) for i in row if i >= 0] for row in r.index]


# --- hard search -------------------------------------------------------------------------------------------------


def test_hard_search_latest_of_the_category_most_recent_first() -> None:
    h = history_of([10, 11, 12, 13, 14, 15, 16], cats=[5, 7, 5, 5, 7, 9, 5])
    r = HardSearch(k=3).search(h, np.array([100, 101, 102, 103]), np.array([5, 7, 42, 9]))
    assert r.index.tolist() == [[6, 3, 2], [4, 1, -1], [-1, -1, -1], [5, -1, -1]]
    assert r.mask.tolist() == [[True] * 3, [True, True, False], [False] * 3, [True, False, False]]
    assert r.item_id.tolist() == [[16, 13, 12], [14, 11, 0], [0, 0, 0], [15, 0, 0]]
    assert r.ts[0].tolist() == h["ts"][[6, 3, 2]].tolist()
    assert r.category_id[1].tolist() == [7, 7, 0]
    assert r.action[0].tolist() == h["action"][[6, 3, 2]].tolist()


def test_hard_search_lists_selects_the_same_records_as_the_full_history() -> None:
    rng = np.random.default_rng(1)
    n, k = 3000, 16
    cats = rng.choice([1, 2, 3, 70_000, 5], size=n, p=[0.5, 0.3, 0.15, 0.049, 0.001]).tolist()
    h = history_of(rng.integers(0, 500, size=n).tolist(), cats)
    by_category = {c: h[h["category_id"] == c][-40:] for c in set(cats)}  # each list holds its latest >= K (or all)
    cand_cats = np.array([1, 2, 3, 70_000, 5, 6, 1, 2])
    hard = HardSearch(k=k)
    full = hard.search(h, np.arange(len(cand_cats)), cand_cats)
    lists = hard.search_lists(by_category, np.arange(len(cand_cats)), cand_cats)
    for name in ("item_id", "category_id", "ts", "action", "mask"):
        assert np.array_equal(getattr(full, name), getattr(lists, name)), name
    assert full.mask[5].sum() == 0  # category 6 is unknown
    assert 0 < full.mask[4].sum() < k  # category 5 is rare: masked slots
    # index: positions inside the category's list
    assert np.array_equal(lists.ts[0], by_category[1]["ts"][lists.index[0]])


def test_stable_argsort_small_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    for high in (7, 60_000, 2**20, 2**31 - 1):
        values = rng.integers(0, high, size=5000)
        assert np.array_equal(stable_argsort_small(values, high), np.argsort(values, kind="stable"))


# --- exact and soft search ---------------------------------------------------------------------------------------

# Integer-valued vectors: inner products are exact in float32, whatever order BLAS or Faiss add them in.
VECTORS = {1: [3, 0, 0, 0], 2: [2, 1, 0, 0], 3: [1, 0, 0, 0], 4: [0, 4, 0, 0], 5: [-1, 0, 0, 0], 6: [0, 0, 2, 0]}
CANDIDATE = 99  # query [1, 0, 0, 0]: scores 1->3, 2->2, 3->1, 4->0, 5->-1, 6->0


@pytest.fixture(scope="module")
def small_index() -> ItemIndex:
    return hand_index(VECTORS, {CANDIDATE: [1, 0, 0, 0], 98: [0, 1, 0, 0]})


def test_exact_search_known_top_k(small_index: ItemIndex) -> None:
    h = history_of([3, 1, 5, 2, 1, 3, 4, 6])
    r = ExactSearch(small_index, k=4).search(h, np.array([CANDIDATE, 98]), np.array([0, 0]))
    # candidate 99: item 1 (positions 4, 1), item 2 (3), item 3 (5 is more recent than 0)
    # candidate 98: item 4 (6), item 2 (3), then score 0: items 1, 3, 5, 6 most recent first -> 7
    assert r.index.tolist() == [[4, 1, 3, 5], [6, 3, 7, 5]]
    assert r.item_id.tolist() == [[1, 1, 2, 3], [4, 2, 6, 3]]


def test_exact_search_repeats_fill_slots_most_recent_first(small_index: ItemIndex) -> None:
    h = history_of([1, 3, 1, 1, 2, 1, 1, 5, 1])
    r = ExactSearch(small_index, k=4).search(h, np.array([CANDIDATE]), np.array([0]))
    assert r.index.tolist() == [[8, 6, 5, 3]]


def test_equal_scores_of_different_items_interleave_by_recency() -> None:
    index = hand_index({1: [1, 0], 2: [1, 0], 3: [2, 0]}, {CANDIDATE: [1, 0]})
    h = history_of([1, 2, 3, 1, 2, 2, 1])
    for search in (ExactSearch(index, k=5), SoftSearch(index, k=5, nprobe=2)):
        r = search.search(h, np.array([CANDIDATE]), np.array([0]))
        assert r.index.tolist() == [[2, 6, 5, 4, 3]], type(search).__name__


def test_tied_candidates_in_one_request_get_their_own_results() -> None:
    """Rows with ties are expanded once per distinct (items, scores) row and shared: many candidates without a
    vector (every score 0) and several with ties of their own get what each gets when searched alone."""
    index = hand_index({1: [1, 0], 2: [1, 0], 3: [2, 0], 4: [0, 1], 5: [0, 1]}, {CANDIDATE: [1, 0], 60: [0, 1]})
    h = history_of([1, 2, 3, 4, 5, 1, 4, 2, 5, 9, 11, 3, 4])
    cands = np.array([CANDIDATE, 70, 60, 71, CANDIDATE, 72, 60, 73])  # 70..73: no vector
    for search in (ExactSearch(index, k=6), SoftSearch(index, k=6, nprobe=2, exact_below=0)):
        together = search.search(h, cands, np.zeros(len(cands), dtype=np.int64))
        alone = [search.search(h, cands[i : i + 1], np.array([0])).index[0].tolist() for i in range(len(cands))]
        assert together.index.tolist() == alone, type(search).__name__
        assert together.index[1].tolist() == together.index[3].tolist()  # the vector-less share one result


def test_fewer_behaviours_than_k_leave_masked_slots(small_index: ItemIndex) -> None:
    h = history_of([1, 2])
    for search in (ExactSearch(small_index, k=4), SoftSearch(small_index, k=4, nprobe=2)):
        r = search.search(h, np.array([CANDIDATE]), np.array([0]))
        assert r.index.tolist() == [[0, 1, -1, -1]]
        assert r.mask.tolist() == [[True, True, False, False]]
        assert r.item_id.tolist() == [[1, 2, 0, 0]]


def random_case(seed: int, n_hist: int = 4000, n_items: int = 600, d: int = 8) -> tuple[ItemIndex, np.ndarray]:
    rng = np.random.default_rng(seed)
    keys = rng.standard_normal((1024, d)).astype(np.float32)
    queries = keys + 0.3 * rng.standard_normal(keys.shape).astype(np.float32)
    index = ItemIndex.build(keys, queries, n_clusters=16, seed=seed)
    popularity = 1.0 / np.arange(1, n_items + 1)
    items = rng.choice(n_items, size=n_hist, p=popularity / popularity.sum())  # heavy repeats
    return index, history_of(items.tolist())


@pytest.mark.parametrize("seed", [0, 1])
def test_soft_search_probing_every_cluster_equals_exact(seed: int) -> None:
    index, h = random_case(seed)
    cands = np.random.default_rng(seed).integers(0, 5000, size=60)
    exact = ExactSearch(index, k=32).search(h, cands, None)
    soft = SoftSearch(index, k=32, nprobe=index.n_clusters).search(h, cands, None)
    assert recall_at_k(soft, exact) == 1.0
    assert np.array_equal(soft.index, exact.index)


def test_soft_search_keeps_to_the_probed_clusters_in_score_order() -> None:
    index, h = random_case(2)
    cands = np.arange(40)
    nprobe = 3
    soft = SoftSearch(index, k=16, nprobe=nprobe, exact_below=0).search(h, cands, None)  # the IVF path
    exact = ExactSearch(index, k=16).search(h, cands, None)
    _, probed = index.quantizer.search(index.query_vectors(cands), nprobe)
    for c in range(len(cands)):
        got = soft.index[c][soft.mask[c]]
        assert len(got) == 16
        assert np.isin(index.cluster_of(h["item_id"][got]), probed[c]).all()
        scores = index.key_vectors(h["item_id"][got]) @ index.query_vectors(cands[c : c + 1])[0]
        assert np.all(np.diff(scores) <= 1e-5)
    assert 0.0 < recall_at_k(soft, exact) < 1.0


def test_empty_history_masks_everything(small_index: ItemIndex) -> None:
    h = history_of([])
    searches = [ExactSearch(small_index, k=3), SoftSearch(small_index, k=3, nprobe=1), HardSearch(k=3)]
    for search in searches:
        r = search.search(h, np.array([CANDIDATE, 1]), np.array([0, 1]))
        assert r.index.shape == (2, 3) and not r.mask.any() and (r.index == -1).all() and (r.item_id == 0).all()
        none = search.search(history_of([1, 2]), np.array([], dtype=np.int64), np.array([], dtype=np.int64))
        assert none.index.shape == (0, 3)


def test_bad_inputs_are_named(small_index: ItemIndex) -> None:
    h = history_of([1, 2])
    with pytest.raises(ValueError, match="cand_cats"):
        HardSearch(k=2).search(h, np.array([1, 2]), np.array([1]))
    with pytest.raises(ValueError, match="cand_items"):
        ExactSearch(small_index, k=2).search(h, np.array([[1, 2]]), None)
    with pytest.raises(ValueError, match="nprobe=3"):
        SoftSearch(small_index, k=2, nprobe=3)
    with pytest.raises(ValueError, match="k=0"):
        HardSearch(k=0)
    with pytest.raises(ValueError, match="history"):
        HardSearch(k=2).search(np.zeros(3, dtype=np.int64), np.array([1]), np.array([1]))


# --- recall --------------------------------------------------------------------------------------------------------


def made(index: list[list[int]]) -> Retrieved:
    return gather(history_of(list(range(10))), np.array(index, dtype=np.int64))


def test_recall_at_k_on_hand_made_pairs() -> None:
    exact = made([[1, 2, 3, 4], [5, 6, -1, -1], [-1, -1, -1, -1]])
    assert recall_at_k(made([[4, 3, 2, 1], [6, 5, -1, -1], [1, 2, 3, 4]]), exact) == 1.0
    # row 0: 2 of 4; row 1: 1 of 2; row 2 has an empty exact set and is skipped
    assert recall_at_k(made([[1, 2, 7, 8], [5, 9, 0, -1], [-1, -1, -1, -1]]), exact) == 0.5
    assert recall_at_k(made([[-1] * 4] * 3), exact) == 0.0
    with pytest.raises(ValueError, match="candidates"):
        recall_at_k(made([[1, 2, 3, 4]]), exact)


def test_distinct_rows_groups_equal_rows_even_when_their_hashes_collide() -> None:
    rng = np.random.default_rng(3)
    rows = rng.integers(-3, 3, size=(200, 5))  # many repeated rows
    first, inverse = _distinct_rows(rows)
    assert np.array_equal(rows[first][inverse], rows)
    assert len(first) == len(np.unique(rows, axis=0))
    # two different rows with one hash: x·w1 = y·w2 (mod 2^64), the weights of columns 1 and 2
    golden, mod = 0x9E3779B97F4A7C15, 2**64
    w1, w2 = (1 * golden % mod) | 1, (2 * golden % mod) | 1
    x = 12345
    y = x * w1 * pow(w2, -1, mod) % mod
    y_signed = y - mod if y >= 2**63 else y
    clash = np.array([[x, 0], [0, y_signed], [x, 0]], dtype=np.int64)
    first, inverse = _distinct_rows(clash)
    assert len(first) == 2 and np.array_equal(clash[first][inverse], clash) and inverse[0] == inverse[2]


@pytest.mark.parametrize("max_pos", [54_000, 2**40])  # the packed key, and the lexsort it falls back to
def test_packed_order_equals_the_three_key_lexsort(max_pos: int) -> None:
    """By row ascending, score descending, position descending — with tied scores, negative and infinite scores,
    and -0.0 equal to 0.0 as lexsort has them."""
    rng = np.random.default_rng(5)
    for _ in range(20):
        n = int(rng.integers(1, 400))
        row = np.sort(rng.integers(0, 50, n))
        pos = rng.choice(max_pos, n, replace=False).astype(np.int64)  # distinct (row, position) pairs
        score = rng.standard_normal(n).astype(np.float32)
        tied = rng.random(n) < 0.5
        score[tied] = rng.choice(np.array([0.0, -0.0, 0.5, -0.5, -np.inf], np.float32), int(tied.sum()))
        want = np.lexsort((-pos, -score, row))
        got = _by_row_score_position(row, score, pos)
        assert np.array_equal(got, want)
