"""build_batch and score with the real GSU and item tables: what goes where, and training batches == serving
scores."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import torch

from models.features import Searcher, build_batch
from models.layers import TimeBuckets
from models.ranker import RankerModel, score
from models.testing import NOW, VARIANTS, gsu_of, history, lookups_of, tiny
from retrieval.events import Behaviors
from retrieval.gsu import HardSearch
from retrieval.gsu_kinds import KIND_CATEGORY, KIND_ITEM
from retrieval.hashing import bucket, user_bucket
from retrieval.history_stats import history_stats, stat_names


def gsu_for(model: RankerModel) -> Searcher | None:
    return gsu_of(model.config)  # type: ignore[no-any-return]


def test_short_sequence_is_the_last_s_hashed_and_padded() -> None:
    cfg = tiny("din")  # short_len 6
    rng = np.random.default_rng(0)
    hs = [history(rng, 10), history(rng, 2), history(rng, 0)]
    batch = build_batch(hs, [0, 1, 2], [5, 6, 7], [1, 2, 3], NOW, cfg)
    assert batch.short_item.shape == (3, 6) and batch.n_users == 3 and batch.n_candidates == 3
    assert batch.short_item[0].tolist() == bucket(hs[0]["item_id"][-6:], cfg.item_buckets).tolist()
    assert batch.short_cat[1, :2].tolist() == bucket(hs[1]["category_id"], cfg.category_buckets).tolist()
    assert batch.short_action[1, :2].tolist() == (1 + hs[1]["action"].astype(np.int64)).tolist()
    assert batch.short_mask.sum(1).tolist() == [6, 2, 0]
    for name in ("short_item", "short_cat", "short_action"):
        t = getattr(batch, name)
        assert torch.all(t[~batch.short_mask] == 0) and torch.all(t[batch.short_mask] > 0)
    assert batch.cand_item.tolist() == bucket([5, 6, 7], cfg.item_buckets).tolist()
    assert batch.long_item is None and batch.full_item is None


def test_long_sequence_is_the_gsu_result_with_time_buckets() -> None:
    cfg = tiny("sim_hard", vocabulary=False)
    rng = np.random.default_rng(1)
    hs = [history(rng, 40), history(rng, 3)]
    gsu = HardSearch(cfg.long_k)
    user_of, items, cats = np.array([1, 0, 0]), np.array([11, 12, 13]), np.array([0, 1, 3])
    now = np.array([NOW, NOW + 500])
    batch = build_batch(hs, user_of, items, cats, now, cfg, gsu)
    assert batch.long_tag is not None and batch.long_rel is None  # hashing: no item vectors, no relevance
    assert batch.long_item is not None and batch.long_mask is not None and batch.long_dt is not None
    assert batch.long_cat is not None
    ref = gsu.search(hs[0], items[1:], cats[1:])
    assert batch.long_mask[1:].numpy().tolist() == ref.mask.tolist()
    want_items = np.where(ref.mask, bucket(ref.item_id, cfg.item_buckets), 0)
    assert batch.long_item[1:].numpy().tolist() == want_items.tolist()
    want_dt = np.where(ref.mask, TimeBuckets.bucketize(NOW - ref.ts, cfg.time_buckets), 0)
    assert batch.long_dt[1:].numpy().tolist() == want_dt.tolist()
    for row, cat in ((1, 1), (2, 3)):  # hard search: every retrieved behaviour has the candidate's category
        assert batch.long_mask[row].any()
        assert torch.all(batch.long_cat[row][batch.long_mask[row]] == int(bucket([cat], cfg.category_buckets)[0]))
    ref1 = gsu.search(hs[1], items[:1], cats[:1])  # row 0 belongs to user 1, timed from user 1's now
    assert batch.long_mask[0].numpy().tolist() == ref1.mask[0].tolist()
    want_dt1 = np.where(ref1.mask, TimeBuckets.bucketize(NOW + 500 - ref1.ts, cfg.time_buckets), 0)
    assert batch.long_dt[0].numpy().tolist() == want_dt1[0].tolist()


Sample = tuple[Behaviors, int, npt.NDArray[np.int64], npt.NDArray[np.int64]]


def samples(rng: np.random.Generator, users: int = 3, per_user: int = 4) -> list[Sample]:
    out = []
    for u in range(users):
        h = history(rng, [30, 0, 9][u % 3])
        out.append((h, NOW + 100 * u, rng.integers(0, 80, per_user), rng.integers(0, 4, per_user)))
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_training_batch_equals_serving_scores(variant: str) -> None:
    """Training builds U = B rows (one candidate each); serving scores one user's candidates at a time through
    ``score``: the same samples must give the same pCTR."""
    torch.manual_seed(0)
    model = RankerModel(tiny(variant)).eval()
    gsu = gsu_for(model)
    data = samples(np.random.default_rng(2))
    histories = [h for h, _, items, _ in data for _ in items]
    nows = np.array([now for _, now, items, _ in data for _ in items])
    items = np.concatenate([i for _, _, i, _ in data])
    cats = np.concatenate([c for _, _, _, c in data])
    lookups = lookups_of(model.config)
    batch = build_batch(histories, np.arange(len(items)), items, cats, nows, model.config, gsu, lookups=lookups)
    assert batch.n_users == batch.n_candidates == len(items)
    with torch.inference_mode():
        trained = torch.sigmoid(model(batch).logits).numpy()
    served = np.concatenate([score(model, h, i, c, now, gsu, lookups=lookups) for h, now, i, c in data])
    assert served.dtype == np.float32
    np.testing.assert_allclose(served, trained, rtol=1e-5, atol=1e-6)


def test_store_lists_path_equals_history_path() -> None:
    """Serving may pass the GSU result of HardSearch.search_lists (the store's per-category read) instead of the
    full history: same scores."""
    torch.manual_seed(1)
    model = RankerModel(tiny("sim_can", gsu="hard", stats=False)).eval()
    cfg = model.config
    lookups = lookups_of(cfg)
    h = history(np.random.default_rng(3), 50)
    items, cats = np.array([1, 2, 3, 4]), np.array([0, 2, 2, 9])
    by_cat = {int(c): h[h["category_id"] == c] for c in np.unique(cats)}
    retrieved = HardSearch(cfg.long_k).search_lists(by_cat, items, cats)
    direct = score(model, h, items, cats, NOW, HardSearch(cfg.long_k), lookups=lookups)
    listed = score(model, h[-cfg.short_len :], items, cats, NOW, lookups=lookups, retrieved=retrieved)
    np.testing.assert_allclose(listed, direct, rtol=1e-6)


@pytest.mark.parametrize("variant", ["sim_can", "sim_soft", "din_long"])
def test_unseen_ids_score_without_error(variant: str) -> None:
    torch.manual_seed(2)
    model = RankerModel(tiny(variant)).eval()
    h = history(np.random.default_rng(4), 20)
    h["item_id"][-1] = 2**62  # never seen anywhere
    p = score(model, h, [10**15, 2**63 - 1, 0], [2**31 - 1, 123_456, 0], NOW, gsu_for(model),
              lookups=lookups_of(model.config))
    assert p.shape == (3,) and np.all((p > 0) & (p < 1))


def test_vocabulary_rows_statistics_and_search_tags() -> None:
    """A vocabulary model: known ids get their own rows, the statistics are history_stats' own numbers, and every
    retrieved slot carries its search kind, whether it is the target item, and its relevance."""
    cfg = tiny("sim_hybrid")
    lookups = lookups_of(cfg)
    assert lookups.items is not None and lookups.categories is not None
    rng = np.random.default_rng(6)
    h = history(rng, 80)
    items = np.array([int(h["item_id"][3]), 7, 10**12])  # an item of the history, a known one, an unseen one
    cats = np.array([int(h["category_id"][3]), 1, 2])
    gsu = gsu_for(RankerModel(cfg))
    batch = build_batch([h], np.zeros(3, np.int64), items, cats, NOW, cfg, gsu, lookups=lookups)
    rows = lookups.items.vocab.rows(items)
    assert batch.cand_item.tolist() == rows.tolist() and rows[0] <= lookups.items.vocab.n_known < rows[2]
    assert batch.cand_stats is not None and batch.cand_stats.shape == (3, len(stat_names(cfg.stats_spec, True)))
    want = history_stats(h, items, cats, NOW, cfg.stats_spec, lookups.items)
    np.testing.assert_allclose(batch.cand_stats.numpy(), want)
    assert batch.long_tag is not None and batch.long_rel is not None and batch.long_mask is not None
    tags = batch.long_tag[0][batch.long_mask[0]]
    assert int(tags[0]) == 1 + 2 * KIND_ITEM + 1  # the target's own behaviour leads, flagged as the target
    assert bool(torch.all(batch.long_tag[~batch.long_mask] == 0))
    assert float(batch.long_rel[0, 0]) == pytest.approx(1.0, abs=1e-4) or not lookups.items.vectors[rows[0]].any()
    assert set(tags.tolist()) <= {1 + 2 * k + s for k in (KIND_ITEM, 1, KIND_CATEGORY) for s in (0, 1)}


def test_bad_inputs_are_named() -> None:
    cfg = tiny("sim_hard", vocabulary=False)
    h = [history(np.random.default_rng(5), 5)]
    with pytest.raises(ValueError, match="needs a GSU"):
        build_batch(h, [0], [1], [1], NOW, cfg)
    with pytest.raises(ValueError, match="user_of must index histories"):
        build_batch(h, [1], [1], [1], NOW, cfg, HardSearch(cfg.long_k))
    with pytest.raises(ValueError, match="cand_items"):
        build_batch(h, [0, 0], [1], [1, 2], NOW, cfg, HardSearch(cfg.long_k))
    with pytest.raises(ValueError, match="long_k"):
        build_batch(h, [0], [1], [1], NOW, cfg, HardSearch(cfg.long_k + 3))


def test_user_id_embedding_is_the_same_in_training_and_serving_and_tells_users_apart() -> None:
    torch.manual_seed(4)
    model = RankerModel(tiny("sim_can", user_dim=4, user_buckets=64)).eval()
    assert model.embedding.user is not None and not bool(model.embedding.user.weight.any())  # starts at zero
    with torch.no_grad():
        model.embedding.user.weight.normal_(std=1.0)  # as if trained
    gsu, lookups = gsu_for(model), lookups_of(model.config)
    data = samples(np.random.default_rng(6))
    names = [f"user-{u}" for u in range(len(data))]
    histories = [h for h, _, items, _ in data for _ in items]
    ids = [name for name, (_, _, items, _) in zip(names, data, strict=True) for _ in items]
    nows = np.array([now for _, now, items, _ in data for _ in items])
    items = np.concatenate([i for _, _, i, _ in data])
    cats = np.concatenate([c for _, _, _, c in data])
    batch = build_batch(histories, np.arange(len(items)), items, cats, nows, model.config, gsu, lookups=lookups,
                        user_ids=ids)  # fmt: skip
    assert batch.user_row is not None and batch.user_row.tolist() == user_bucket(ids, 64).tolist()
    with torch.inference_mode():
        trained = torch.sigmoid(model(batch).logits).numpy()
    served = np.concatenate([score(model, h, i, c, now, gsu, lookups=lookups, user_id=name)
                             for name, (h, now, i, c) in zip(names, data, strict=True)])  # fmt: skip
    np.testing.assert_allclose(served, trained, rtol=1e-5, atol=1e-6)
    h, now, i, c = data[0]
    other = score(model, h, i, c, now, gsu, lookups=lookups, user_id="someone-else")
    assert not np.allclose(other, served[: len(i)])  # the same history, another user: another score
    with pytest.raises(ValueError, match="user_dim=4 needs user_ids"):
        score(model, h, i, c, now, gsu, lookups=lookups)


def test_user_buckets_are_stable_and_in_range() -> None:
    ids = [str(n) for n in range(500)] + ["", "ü-ser", "\ud800"]  # a lone surrogate can come in through JSON
    rows = user_bucket(ids, 1024)
    assert rows.tolist() == user_bucket(list(ids), 1024).tolist()
    assert rows.min() >= 1 and rows.max() < 1024 and len(set(rows.tolist())) > 350  # spread, never the padding row
