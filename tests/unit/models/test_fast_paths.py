"""The cheap paths of a forward give what the plain ones give: long rows shared between candidates (hard search),
one user's attention/co-action without padding, CAN's tanh through sigmoids, the bias-masked softmax."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from models.age import AGEParams, explore, take_candidates
from models.features import Batch, build_batch
from models.layers import CoActionUnit, MultiHeadTargetAttention, TargetAttention, distinct_rows, masked_softmax
from models.ranker import RankerModel
from models.testing import NOW, gsu_of, history, lookups_of, tiny
from retrieval.gsu import HardSearch

USER_SIDE = ("now", "short_item", "short_cat", "short_action", "short_mask",
             "full_item", "full_cat", "full_action", "full_mask")  # fmt: skip


def per_candidate_users(batch: Batch) -> Batch:
    """The same rows with one user row per candidate (U = C): nothing is shared, every plain path runs."""
    out = dataclasses.replace(batch, user_of=torch.arange(batch.n_candidates), long_rows=None, long_slot=None)
    if batch.long_mask is not None:  # the slots' columns, however the batch holds them
        out.long_item, out.long_cat, out.long_action, out.long_dt = batch.long_columns()
    for name in USER_SIDE:
        value = getattr(batch, name)
        if value is not None:
            setattr(out, name, value.index_select(0, batch.user_of))
    return out


def served_batch(variant: str, lengths: tuple[int, ...], seed: int = 0, *, idle_user: bool = False
                 ) -> tuple[RankerModel, Batch]:  # fmt: skip
    """Hard-search features of ``len(lengths)`` users with 7 candidates each over 6 categories, of which the
    histories hold only 0..3: categories 4 and 5 retrieve nothing (all-padding rows); repeated categories
    retrieve the same row. ``idle_user``: one more user, with no history and no candidates."""
    torch.manual_seed(seed)
    cfg = tiny(variant, gsu="hard")  # hard search: candidates of one category share their retrieved row
    model = RankerModel(cfg).eval()
    rng = np.random.default_rng(seed)
    histories = [history(rng, n) for n in lengths] + [history(rng, 0)] * idle_user
    c = 7 * len(lengths)
    user_of = np.repeat(np.arange(len(lengths)), 7)
    cats = np.tile([0, 1, 0, 4, 1, 5, 4], len(lengths))
    items = rng.integers(0, 60, c)
    gsu = HardSearch(cfg.long_k) if cfg.gsu == "hard" else gsu_of(cfg)
    return model, build_batch(histories, user_of, items, cats, NOW, cfg, gsu, lookups=lookups_of(cfg))


def test_distinct_rows_groups_exactly_the_equal_rows() -> None:
    rng = np.random.default_rng(0)
    base = [torch.from_numpy(rng.integers(0, 5, (6, 8))) for _ in range(3)]
    base[0][5] = base[1][5] = base[2][5] = 0  # an all-padding row
    pick = torch.from_numpy(rng.integers(0, 6, 40))
    cols = [b.index_select(0, pick) for b in base]
    cols[2][7, 3] += 1  # a near-duplicate: one position of one column differs
    groups = distinct_rows(*cols)
    assert groups is not None
    first, inverse = groups
    for col in cols:
        assert torch.equal(col.index_select(0, first).index_select(0, inverse), col)
    rows = torch.cat(cols, dim=1)  # [C, 3K]
    same_row = (rows[:, None, :] == rows[None, :, :]).all(-1)
    assert torch.equal(inverse[:, None] == inverse[None, :], same_row)
    assert len(first) == len(torch.unique(rows, dim=0))
    assert distinct_rows(*(c[:1] for c in cols)) is None  # one row: nothing to share
    assert distinct_rows(torch.arange(12).view(4, 3)) is None  # all distinct


@pytest.mark.parametrize("variant", ["sim_hard", "sim_can"])
@pytest.mark.parametrize("lengths", [(40,), (0,), (40, 0, 3)])
def test_shared_long_rows_give_the_per_candidate_logits(variant: str, lengths: tuple[int, ...]) -> None:
    model, batch = served_batch(variant, lengths)
    assert model.long is not None and batch.long_mask is not None
    # one user: build_batch hands over the distinct behaviours (the GSU's positions) and no per-slot columns;
    # several: the per-slot columns, and the model groups rows itself
    assert (batch.long_rows is not None) == (len(lengths) == 1) == (batch.long_slot is not None)
    assert (batch.long_item is None) == (len(lengths) == 1)
    if batch.long_rows is not None and batch.long_slot is not None:
        _, plain = served_batch(variant, lengths, idle_user=True)  # two users: the per-slot layout
        for mine, theirs in zip(batch.long_columns(), plain.long_columns(), strict=True):
            assert torch.equal(mine, theirs)
        assert torch.equal(batch.long_slot == 0, ~batch.long_mask) and not batch.long_rows[:, 0].any()
        assert batch.long_rows.shape[1] <= 1 + int(batch.long_mask.sum())  # each retrieved behaviour at most once
    ctx = model.context(batch)
    assert ctx.long_slot is not None and ctx.long_z is not None
    c, k = batch.long_mask.shape
    assert ctx.long_slot.shape == (c, k) and ctx.long_z.shape[0] < c * k  # rows are shared
    assert not batch.long_mask[3].any()  # category 4 retrieves nothing
    # z of the distinct rows, read through the slots, is exactly z of every slot (one user row per candidate)
    plain_z, plain_slot = model.long.memory(model.embedding, per_candidate_users(batch))
    assert plain_slot is None and plain_z.shape[:2] == (c, k)
    assert torch.equal(ctx.long_z.index_select(0, ctx.long_slot.reshape(-1)).view(plain_z.shape), plain_z)
    with torch.inference_mode():
        shared = model(batch).logits
        plain = model(per_candidate_users(batch)).logits
    assert torch.isfinite(shared).all()
    torch.testing.assert_close(shared, plain, rtol=1e-5, atol=1e-6)


def test_per_category_lists_are_not_taken_for_history_positions() -> None:
    """HardSearch.search_lists gives positions inside each category's list, so equal positions of two categories
    are different behaviours: build_batch must not share them (the model groups equal rows itself instead)."""
    torch.manual_seed(0)
    cfg = tiny("sim_hard", gsu="hard")
    model = RankerModel(cfg).eval()
    h = history(np.random.default_rng(1), 60)
    cats = np.array([0, 1, 0, 2, 1, 3], dtype=np.int64)
    items = np.arange(6, dtype=np.int64)
    lists = {int(cat): h[h["category_id"] == cat] for cat in np.unique(h["category_id"])}
    found = HardSearch(cfg.long_k).search_lists(lists, items, cats)
    owner, lookups = np.zeros(6, dtype=np.int64), lookups_of(cfg)
    batch = build_batch([h], owner, items, cats, NOW, cfg, retrieved=[found], lookups=lookups)
    assert batch.long_rows is None and batch.long_slot is None
    direct = build_batch([h], owner, items, cats, NOW, cfg, HardSearch(cfg.long_k), lookups=lookups)
    assert direct.long_rows is not None  # the same selection by history positions is shared
    with torch.inference_mode():
        want = model(per_candidate_users(batch)).logits
        torch.testing.assert_close(model(batch).logits, want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model(direct).logits, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lengths", [(40, 5), (40,)])
def test_age_reads_shared_rows_of_the_candidates_it_moves(lengths: tuple[int, ...]) -> None:
    """Rows grouped by the model (several users) or handed over by build_batch (one user): a subset of the
    candidates reads the same rows, and exploration scores as with nothing shared."""
    model, batch = served_batch("sim_can", lengths)
    assert (batch.long_rows is not None) == (len(lengths) == 1)
    ctx = model.context(batch)
    assert ctx.long_slot is not None
    rows = torch.tensor([5, 0, 3, 6])
    cand = model.embedding.candidate(batch.cand_item, batch.cand_cat)
    with torch.no_grad():
        whole = model.over_input(batch, cand, ctx)
        part = model.over_input(take_candidates(batch, rows), cand[rows], ctx.take(rows))
    torch.testing.assert_close(part, whole[rows])
    params = AGEParams(policy="ucb", lam=0.5, dropout=0.2, samples=4)
    got = explore(model, batch, params, generator=torch.Generator().manual_seed(0))
    want = explore(model, per_candidate_users(batch), params, generator=torch.Generator().manual_seed(0))
    assert got.moved.any()
    np.testing.assert_allclose(got.pctr, want.pctr, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.score, want.score, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("norm", ["softmax", "sum"])
@pytest.mark.parametrize("chunk", [None, 2])
def test_one_user_attention_equals_per_candidate_rows_with_gradients(norm: str, chunk: int | None) -> None:
    torch.manual_seed(0)
    layer = TargetAttention(4, (6, 3), norm)
    c = 5
    keys = torch.randn(1, 6, 4, requires_grad=True)
    mask = torch.tensor([[True, False, True, True, False, True]])  # holes, not only trailing padding
    query = torch.randn(c, 4, requires_grad=True)
    one = layer(query, keys, mask, torch.zeros(c, dtype=torch.long), chunk=chunk)
    grads_one = torch.autograd.grad(one.pow(2).sum(), [query, keys, *layer.parameters()])
    rep = layer(query, keys.expand(c, 6, 4), mask.expand(c, 6), torch.arange(c), chunk=chunk)
    grads_rep = torch.autograd.grad(rep.pow(2).sum(), [query, keys, *layer.parameters()])
    torch.testing.assert_close(one, rep, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads_one, grads_rep, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_one_user_without_behaviours_attends_to_nothing() -> None:
    layer = TargetAttention(4, (6,))
    query = torch.randn(3, 4, requires_grad=True)
    out = layer(query, torch.randn(1, 5, 4), torch.zeros(1, 5, dtype=torch.bool), torch.zeros(3, dtype=torch.long))
    assert out.shape == (3, 4) and torch.all(out == 0)
    (grad,) = torch.autograd.grad(out.sum(), query)
    assert torch.all(grad == 0)


def reference_esu(esu: MultiHeadTargetAttention, query: torch.Tensor, z: torch.Tensor, mask: torch.Tensor,
                  tag: torch.Tensor, rel: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
    """SIM's ESU as written, per head, with the extras materialised: x_j = onehot(tag_j)[1:] ⊕ rel_j,
    head_i = softmax_j((W_bi z_j) · (W_ai q) / √a + w_i · x_j), pooled Σ_j w_ij [z_j ⊕ x_j]."""
    x = torch.nn.functional.one_hot(tag, esu.tag_dim + 1)[..., 1:].to(z.dtype)  # [C,K,tag_dim]
    if rel is not None:
        x = torch.cat([x, rel[..., None]], dim=-1)  # [C,K,E]
    heads = []
    for i in range(esu.heads):
        rows = slice(i * esu.head_dim, (i + 1) * esu.head_dim)
        q = query @ esu.w_a.weight[rows].T  # [C,a]
        k = z @ esu.w_b.weight[rows].T  # [C,K,a]
        assert esu.w_x is not None
        logits = (k @ q[:, :, None]).squeeze(-1) / math.sqrt(esu.head_dim) + x @ esu.w_x.weight[i]  # [C,K]
        logits = logits.masked_fill(~mask, float("-inf"))
        w = torch.nan_to_num(torch.softmax(logits, dim=-1))  # all-padding rows: 0
        heads.append((w[:, :, None] * torch.cat([z, x], dim=-1)).sum(1))  # [C,dz+E]
    return torch.cat(heads, dim=-1)


@pytest.mark.parametrize("relevance", [False, True])
def test_esu_with_slot_rows_and_tag_lookups_equals_the_one_hot_reference(relevance: bool) -> None:
    """The ESU's fast form (z as distinct rows + a slot index, tags looked up instead of one-hot extras, the pooled
    one-hot as a sum per tag) is the ESU with materialised extras, values and gradients."""
    torch.manual_seed(0)
    c, k, dz, tags = 5, 6, 7, 4
    esu = MultiHeadTargetAttention(3, dz, heads=2, head_dim=4, extra_dim=tags + relevance, tag_dim=tags)
    rows = torch.randn(9, dz, dtype=torch.float64, requires_grad=True)  # [R,dz] distinct behaviours
    slot = torch.randint(0, 9, (c, k))
    mask = torch.rand(c, k) > 0.3
    mask[2] = False  # a candidate that retrieved nothing
    tag = torch.where(mask, torch.randint(1, tags + 1, (c, k)), 0)
    rel = torch.where(mask, torch.randn(c, k, dtype=torch.float64), 0.0) if relevance else None
    query = torch.randn(c, 3, dtype=torch.float64, requires_grad=True)
    esu = esu.double()
    got = esu(query, rows, mask, slot, tag, rel)
    per_slot = esu(query, rows[slot], mask, None, tag, rel)  # z given per slot [C,K,dz]
    want = reference_esu(esu, query, rows[slot], mask, tag, rel)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(per_slot, want)
    assert torch.all(got[2] == 0)
    probe = torch.randn_like(want)
    leaves = [query, rows, *esu.parameters()]
    grads_got = torch.autograd.grad((got * probe).sum(), leaves)
    grads_want = torch.autograd.grad((want * probe).sum(), leaves)
    for a, b in zip(grads_got, grads_want, strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="extras per slot"):
        esu(query, rows, mask, slot, None, rel)


def reference_coaction(
    unit: CoActionUnit, params: torch.Tensor, feed: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """CAN with torch.tanh, one candidate and one behaviour at a time (params [C,D'], feed [C,S,d0])."""
    rows = []
    for c in range(params.shape[0]):
        weights = unit.weights(params[c : c + 1])
        per_order = []
        for k in range(1, unit.orders + 1):
            outs = []
            h = feed[c][mask[c]] ** k  # [n, d0]
            for w in weights:
                h = torch.tanh(h @ w[0])
                outs.append(h.sum(0))
            per_order.append(torch.cat(outs))
        rows.append(torch.cat(per_order))
    return torch.stack(rows)


def test_coaction_unit_equals_the_tanh_reference_with_gradients() -> None:
    torch.manual_seed(0)
    unit = CoActionUnit((4, 3, 2), orders=3)
    c = 4
    params = (torch.randn(c, unit.param_size) * 0.7).requires_grad_(True)
    feed = torch.randn(1, 6, 4) * 0.8
    mask = torch.tensor([[True, True, False, True, True, False]])
    want = reference_coaction(unit, params.double(), feed.double().expand(c, 6, 4), mask.expand(c, 6))
    (want_grad,) = torch.autograd.grad(want.pow(2).sum(), params)
    one = unit(params, feed, mask, torch.zeros(c, dtype=torch.long))  # one user: padding dropped
    rep = unit(params, feed.expand(c, 6, 4), mask.expand(c, 6), torch.arange(c))  # several users: masked
    for got in (one, rep):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
        (grad,) = torch.autograd.grad(got.pow(2).sum(), params)
        torch.testing.assert_close(grad.double(), want_grad.float().double(), rtol=1e-4, atol=1e-5)
    with torch.inference_mode():  # without a graph the sigmoids run in place
        torch.testing.assert_close(unit(params, feed, mask, torch.zeros(c, dtype=torch.long)), one.detach())
        torch.testing.assert_close(unit(params, feed.expand(c, 6, 4), mask.expand(c, 6), torch.arange(c)),
                                   rep.detach())  # fmt: skip


def test_masked_softmax_with_a_broadcast_mask_and_all_padding_rows() -> None:
    scores = torch.randn(3, 2, 4, requires_grad=True)
    mask = torch.tensor([[True, False, True, True], [False] * 4, [True] * 4])[:, None, :]  # [C,1,K]
    weights = masked_softmax(scores, mask)
    torch.testing.assert_close(weights[2], torch.softmax(scores[2], -1))
    assert torch.all(weights[1] == 0) and torch.all(weights[0, :, 1] == 0)
    torch.testing.assert_close(weights[0].sum(-1), torch.ones(2))
    (grad,) = torch.autograd.grad((weights * torch.randn(3, 2, 4)).sum(), scores)
    assert torch.isfinite(grad).all() and torch.all(grad[1] == 0) and torch.all(grad[0, :, 1] == 0)
    assert math.isclose(float(masked_softmax(torch.tensor([1e30, 0.0]), torch.tensor([True, False]))[0]), 1.0)
