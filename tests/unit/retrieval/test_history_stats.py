"""history_stats on histories small enough to count by hand, and the invariants that serving relies on."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval import history_stats as history_stats_module
from retrieval.events import BEHAVIOR_DTYPE, Behaviors
from retrieval.gsu_hybrid import HybridSearch
from retrieval.history_stats import BLOCK, NEAR, NEVER_DAYS, REPEAT, StatsSpec, _top_mean, history_stats, stat_names
from retrieval.history_view import HistoryView
from retrieval.item_graph import fit_item_tables

DAY = 86_400
NOW = 1_700_000_000
SPEC = StatsSpec(windows=(2, 4), strong_action=2)


def behaviours(rows: list[tuple[int, int, int, int]]) -> Behaviors:
    """(item, category, days before NOW, action), oldest first."""
    h = np.zeros(len(rows), dtype=BEHAVIOR_DTYPE)
    for i, (item, cat, days, action) in enumerate(rows):
        h[i] = (NOW - days * DAY, item, cat, action)
    return h


HISTORY = behaviours([(1, 10, 9, 0), (2, 10, 8, 3), (1, 10, 7, 2), (3, 20, 6, 0), (1, 10, 5, 0), (4, 30, 1, 1)])


def column(out: np.ndarray, name: str, with_tables: bool = False) -> np.ndarray:
    return out[:, stat_names(SPEC, with_tables).index(name)]


def test_target_item_and_category_counts_by_hand() -> None:
    out = history_stats(HISTORY, [1, 4, 99], [10, 30, 10], NOW, SPEC)
    assert out.shape == (3, len(stat_names(SPEC, False)))
    assert column(out, "item_seen").tolist() == [1, 1, 0]
    np.testing.assert_allclose(column(out, "item_count"), np.log1p([3, 1, 0]))
    np.testing.assert_allclose(column(out, "item_strong"), np.log1p([1, 0, 0]))
    np.testing.assert_allclose(column(out, "item_w2"), np.log1p([1, 1, 0]))  # the last two: (1, ...), (4, ...)
    np.testing.assert_allclose(column(out, "item_w4"), np.log1p([2, 1, 0]))
    np.testing.assert_allclose(column(out, "item_days"), np.log1p([5, 1, NEVER_DAYS]), rtol=1e-6)
    np.testing.assert_allclose(column(out, "cat_count"), np.log1p([4, 1, 4]))
    np.testing.assert_allclose(column(out, "cat_strong"), np.log1p([2, 0, 2]))
    np.testing.assert_allclose(column(out, "cat_share"), [4 / 6, 1 / 6, 4 / 6])
    np.testing.assert_allclose(column(out, "cat_rate"), [3 / 6, 1 / 3, 3 / 6])
    np.testing.assert_allclose(column(out, "cat_days"), np.log1p([5, 1, 5]), rtol=1e-6)
    np.testing.assert_allclose(column(out, "user_length"), np.log1p(6))
    np.testing.assert_allclose(column(out, "user_rate"), (2 + 1) / (6 + 2))


def test_per_candidate_now_and_the_order_of_candidates_do_not_matter_beyond_their_row() -> None:
    items, cats = np.array([4, 1, 3, 1]), np.array([30, 10, 20, 10])
    one = history_stats(HISTORY, items, cats, NOW, SPEC)
    order = np.array([2, 0, 3, 1])
    again = history_stats(HISTORY, items[order], cats[order], NOW, SPEC)
    np.testing.assert_array_equal(again, one[order])
    later = history_stats(HISTORY, items, cats, np.array([NOW, NOW + DAY, NOW, NOW]), SPEC)
    np.testing.assert_allclose(column(later, "item_days")[1], np.log1p(6), rtol=1e-6)


def test_empty_history() -> None:
    out = history_stats(behaviours([]), [1, 2], [1, 1], NOW, SPEC)
    assert np.all(np.isfinite(out)) and column(out, "item_count").tolist() == [0, 0]
    np.testing.assert_allclose(column(out, "item_days"), np.log1p(NEVER_DAYS))


@pytest.fixture(scope="module")
def tables():  # type: ignore[no-untyped-def]
    # items 1, 2, 3 are always engaged together, and so are 7, 8, 9: two taste regions
    rng = np.random.default_rng(0)
    histories = []
    for _ in range(30):
        rows = []
        for _ in range(20):
            group = [(1, 10), (2, 10), (3, 10)] if rng.random() < 0.5 else [(7, 20), (8, 20), (9, 20)]
            rows += [(item, cat, 1, int(rng.integers(0, 4))) for item, cat in rng.permutation(group).tolist()]
        histories.append(behaviours(rows))
    return fit_item_tables(histories, strong_action=2, window=2, neighbours=3, dim=2)


def test_global_counts_with_leave_one_out(tables) -> None:  # type: ignore[no-untyped-def]
    out = history_stats(HISTORY, [1, 1, 77], [10, 10, 10], NOW, SPEC, tables, exclude_action=[-1, 3, -1])
    names = stat_names(SPEC, True)
    count = out[:, names.index("global_count")]
    total = float(tables.count[tables.vocab.rows([1])[0]])
    np.testing.assert_allclose(count[:2], np.log1p([total, total - 1]))
    assert count[2] == 0  # an unseen item: nothing counted, the global rate is the prior
    rate = out[:, names.index("global_rate")]
    assert rate[2] == pytest.approx(tables.mean_rate, rel=1e-5)
    assert rate[1] < rate[0]  # its own strong action taken out


def test_graph_neighbours_and_vectors_find_the_co_engaged_item(tables) -> None:  # type: ignore[no-untyped-def]
    history = behaviours([(1, 10, 3, 2), (1, 10, 2, 0), (1, 10, 1, 0)])  # item 1, three times
    out = history_stats(history, [2, 9], [10, 20], NOW, SPEC, tables)
    names = stat_names(SPEC, True)
    seen, count = out[:, names.index("nb_seen")], out[:, names.index("nb_count")]
    assert seen[0] > 0 and seen[1] == 0 and count[0] > count[1]  # item 2's neighbour 1 is in the history
    near = out[:, names.index("vec_repeat_max")]
    assert near[0] > near[1]  # item 2 is closer to the re-engaged item 1 than item 9 is


def _vector_stats_by_definition(tables, items: list[int], history: Behaviors, recent: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The vec_* statistics as the module docstring defines them, one candidate at a time (the reference)."""
    h_items = history["item_id"].astype(np.int64)
    distinct, counts = np.unique(tables.vocab.rows(h_items), return_counts=True)
    vec = tables.vectors
    rows = []
    for item in items:
        t = tables.vocab.rows([item])[0]
        sims = np.array([-1.0 if r == t else float(vec[t] @ vec[r]) for r in distinct])
        rep = np.where(counts >= REPEAT, sims, -1.0)
        taste = (vec[distinct] * np.where(counts >= REPEAT, counts, 0)[:, None]).sum(axis=0)
        now = vec[tables.vocab.rows(h_items[-recent:])].mean(axis=0)
        cos = [float(vec[t] @ d / np.linalg.norm(d)) if np.linalg.norm(d) > 1e-9 else 0.0 for d in (taste, now)]
        rows.append([rep.max(), np.sort(rep)[-3:].mean(), np.log1p((counts * np.maximum(sims - NEAR, 0)).sum()),
                     np.sort(sims)[-5:].mean(), *cos])  # fmt: skip
    return np.array(rows)


def test_vector_statistics_match_their_definition_across_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history_stats_module, "BLOCK_ELEMENTS", 0)  # blocks of BLOCK candidates, however few items
    rng = np.random.default_rng(5)
    histories = [behaviours([(int(i), int(i) % 7, 1, int(rng.integers(0, 4))) for i in rng.zipf(1.3, 400) % 300])
                 for _ in range(6)]  # fmt: skip
    tables = fit_item_tables(histories, strong_action=2, window=3, neighbours=4, dim=6)
    history = histories[0]
    known = tables.vocab.known
    items = [int(i) for i in rng.choice(known, BLOCK * 2 + 5)]  # more candidates than a block, targets in history
    out = history_stats(history, items, [i % 7 for i in items], NOW, SPEC, tables)
    names = stat_names(SPEC, True)
    got = out[:, [names.index(n) for n in names if n.startswith("vec_")]]
    np.testing.assert_allclose(got, _vector_stats_by_definition(tables, items, history, SPEC.windows[0]), atol=2e-5)


def test_neighbour_statistics_match_their_definition_and_a_view_gives_the_same() -> None:
    """nb_*: per candidate, over its item's graph neighbours (known items) — how many occur in the history, and
    Σ weight·log1p(count), Σ weight·log1p(strong count); unknown items of the history (overflow rows) count for
    none. A request's HistoryView, already used by a search, gives the same statistics as the plain array."""
    rng = np.random.default_rng(7)
    histories = [behaviours([(int(i), int(i) % 5, 1, int(rng.integers(0, 4))) for i in rng.zipf(1.4, 300) % 120])
                 for _ in range(8)]  # fmt: skip
    tables = fit_item_tables(histories, strong_action=2, window=3, neighbours=5, dim=4)
    history = np.concatenate([histories[0], behaviours([(10_000 + i, 1, 1, 3) for i in range(40)])])  # + unknown
    items = [int(i) for i in rng.choice(tables.vocab.known, 50)] + [99_999]
    out = history_stats(history, items, [i % 5 for i in items], NOW, SPEC, tables)
    names = stat_names(SPEC, True)
    got = out[:, [names.index(n) for n in ("nb_seen", "nb_count", "nb_strong")]]
    want = []
    for item in items:
        row = tables.vocab.rows([item])[0]
        seen = count_sum = strong_sum = 0.0
        for nb, w in zip(tables.neighbours[row], tables.weights[row], strict=True):
            if nb == 0:
                continue
            hit = history["item_id"] == tables.vocab.known[nb - 1]
            n, n_strong = int(hit.sum()), int((hit & (history["action"] >= SPEC.strong_action)).sum())
            seen += n > 0
            count_sum += w * np.log1p(n)
            strong_sum += w * np.log1p(n_strong)
        want.append([np.log1p(seen), count_sum, strong_sum])
    np.testing.assert_allclose(got, np.array(want), rtol=1e-5, atol=1e-6)
    assert np.any(got[:, 0] > 0) and got[-1].tolist() == [0.0, 0.0, 0.0]  # some neighbours occur; unknown: none

    view = HistoryView(history)
    HybridSearch(None, 8, 4).search(view, np.array(items), np.array([i % 5 for i in items]))  # fills the view ...
    view.item_groups(tables.vocab)  # ... as the soft search does
    np.testing.assert_array_equal(history_stats(view, items, [i % 5 for i in items], NOW, SPEC, tables), out)


@pytest.mark.parametrize("n", [3, 255, 256, 257, 1000, 4099])
def test_top_mean_is_the_mean_of_the_k_largest(n: int) -> None:
    """_top_mean's bound from chunk maxima never drops one of the k largest: the same as a full partition, also
    with many ties and with the largest values all in one chunk."""
    rng = np.random.default_rng(n)
    for values in (rng.standard_normal((33, n)).astype(np.float32),
                   np.round(rng.standard_normal((33, n)), 1).astype(np.float32),  # many ties
                   np.sort(rng.standard_normal((33, n)), axis=1).astype(np.float32),
                   np.where(rng.random((33, n)) < 2 / n, 1.0, 0.0).astype(np.float32)):  # ~2 ones, then zeros
        # (a candidate without a vector: every similarity equal; fewer than k values above the rest)
        for k in range(1, min(5, n) + 1):
            want = np.sort(values, axis=1)[:, n - k :].mean(axis=1)
            np.testing.assert_allclose(_top_mean(values, k), want, rtol=1e-6, atol=1e-6)
