"""Exploration beside AGE: the honest slate rule (explored = put into the slate by exploration), ε-greedy slates,
Monte-Carlo propensities, the neural-linear posterior, the OPE estimators (by hand and against Open Bandit
Pipeline), and the batched AGE draws with their screening."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.age import AGEParams, apply_budget, explore, prepare, sample
from models.bandits.linear import LinearPosterior
from models.bandits.ope import dr, estimate_all, ipw, snipw
from models.bandits.served import age_slate, count_ucb_slate, policy_params
from models.bandits.slate import draw_seeds, egreedy_slate, greedy_slate, position_propensities
from models.features import build_batch
from models.ranker import RankerModel
from models.testing import NOW, gsu_of, history, lookups_of, tiny


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 30).flatmap(lambda c: st.tuples(
    st.lists(st.floats(0.01, 0.99), min_size=c, max_size=c),
    st.lists(st.floats(-0.3, 0.3), min_size=c, max_size=c),
    st.lists(st.booleans(), min_size=c, max_size=c),
    st.integers(1, c), st.integers(0, 4))))  # fmt: skip
def test_an_item_is_explored_only_when_exploration_put_it_into_the_slate(case: tuple) -> None:
    p, bump, moved, top_n, budget = case
    pctr = np.asarray(p, dtype=np.float32)
    score = np.clip(pctr + np.asarray(bump, dtype=np.float32), 0, 1).astype(np.float32)
    moved_a = np.asarray(moved, dtype=bool)
    order, ranking, explored = apply_budget(pctr, score, moved_a, top_n, budget)
    greedy = greedy_slate(pctr, top_n)
    assert len(order) == top_n and len(set(order.tolist())) == top_n
    assert set(np.flatnonzero(explored).tolist()) == set(order.tolist()) - set(greedy.tolist())
    assert explored.sum() <= budget
    assert np.all(moved_a[explored]) and np.all(score[explored] > pctr[explored])
    assert np.array_equal(ranking, np.where(explored, score, pctr))
    assert list(order) == list(np.lexsort((np.arange(len(pctr)), -ranking))[:top_n])  # sorted by the ranking
    if not explored.any():
        assert np.array_equal(order, greedy)  # no flag: exactly the greedy slate


def test_a_raised_score_inside_the_greedy_slate_is_not_exploration() -> None:
    pctr = np.asarray([0.9, 0.8, 0.5, 0.1], dtype=np.float32)
    score = np.asarray([0.9, 0.95, 0.5, 0.1], dtype=np.float32)  # item 1 is raised but greedy shows it anyway
    order, ranking, explored = apply_budget(pctr, score, np.ones(4, dtype=bool), 2, 2)
    assert order.tolist() == [0, 1] and not explored.any() and ranking[1] == pytest.approx(0.8)
    score[3] = 0.85  # item 3 enters: explored, and it takes the last greedy item's slot
    order, _, explored = apply_budget(pctr, score, np.ones(4, dtype=bool), 2, 2)
    assert order.tolist() == [0, 3] and np.flatnonzero(explored).tolist() == [3]
    order, _, explored = apply_budget(pctr, score, np.ones(4, dtype=bool), 2, 0)  # no budget: greedy
    assert order.tolist() == [0, 1] and not explored.any()


def test_egreedy_replaces_bottom_slots_with_eligible_outsiders_within_budget() -> None:
    pctr = np.linspace(0.9, 0.1, 10).astype(np.float32)
    eligible = np.zeros(10, dtype=bool)
    eligible[[7, 8]] = True
    order, explored = egreedy_slate(pctr, eligible, 4, 1, 1.0, np.random.default_rng(0))
    assert order[:3].tolist() == [0, 1, 2] and order[3] in (7, 8) and np.flatnonzero(explored).tolist() == [order[3]]
    order, explored = egreedy_slate(pctr, eligible, 4, 3, 0.0, np.random.default_rng(0))
    assert order.tolist() == [0, 1, 2, 3] and not explored.any()
    order, explored = egreedy_slate(pctr, eligible, 4, 3, 1.0, np.random.default_rng(0))
    assert explored.sum() == 2 and set(order[2:].tolist()) == {7, 8}  # only two eligible outsiders exist


def test_propensities_count_the_draws_that_agree_slot_by_slot() -> None:
    shown = [5, 2, 7]
    draws = [[5, 2, 7], [5, 7, 2], [5, 2, 9], [1, 2, 7]]
    assert position_propensities(shown, draws).tolist() == [0.75, 0.75, 0.5]
    with pytest.raises(ValueError, match="draws"):
        position_propensities(shown, [[5, 2]])
    seeds = draw_seeds(123, 5)
    assert seeds[0] == 123 and len(set(seeds)) == 5 and seeds == draw_seeds(123, 5)
    assert draw_seeds(124, 5)[1:] != seeds[1:]


def test_linear_posterior_matches_the_direct_inverse_per_item_and_shared() -> None:
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(40, 3))
    group = rng.integers(0, 4, 40)
    for shared in (False, True):
        post = LinearPosterior(3, 4, shared=shared, reg=2.0)
        before = post.spread(phi[:1], [0])
        post.update(phi, group)
        x = np.concatenate([phi, np.ones((40, 1))], axis=1)
        for g in range(4):
            rows = np.ones(40, dtype=bool) if shared else group == g
            a = 2.0 * np.eye(4) + x[rows].T @ x[rows]
            q = post.spread(phi[:5], [g] * 5)
            assert np.allclose(q, np.einsum("ni,ij,nj->n", x[:5], np.linalg.inv(a), x[:5]))
        assert post.spread(phi[:1], [0])[0] < before[0]  # data shrinks the spread
    with pytest.raises(ValueError, match="features"):
        LinearPosterior(3, 2, shared=True).spread(np.ones((2, 4)), [0, 0])


# a log of 3 responses x 2 slots, computed by hand below
REQ = [0, 0, 1, 1, 2, 2]
R = [1, 0, 0, 1, 1, 0]
P = [0.5, 1.0, 0.25, 0.5, 1.0, 0.8]
T = [1, 1, 0, 1, 1, 0]  # the target shows the logged item at that slot?
Q = [0.4, 0.2, 0.1, 0.3, 0.6, 0.5]  # q̂ of the logged item
QE = [0.4, 0.2, 0.3, 0.3, 0.6, 0.1]  # q̂ of the target's item


def test_estimators_by_hand() -> None:
    w = [2.0, 1.0, 0.0, 2.0, 1.0, 0.0]
    assert ipw(REQ, R, P, T).value == pytest.approx((2 + 0 + 0 + 2 + 1 + 0) / 6)
    assert snipw(REQ, R, P, T).value == pytest.approx(5 / sum(w))
    terms = [0.4 + 2 * 0.6, 0.2 + 1 * -0.2, 0.3, 0.3 + 2 * 0.7, 0.6 + 1 * 0.4, 0.1]
    assert dr(REQ, R, P, T, Q, QE).value == pytest.approx(sum(terms) / 6)
    # clustered SE by hand: S_i = per-response sums, n_i = 2
    v = sum(terms) / 6
    s = [terms[0] + terms[1], terms[2] + terms[3], terms[4] + terms[5]]
    assert dr(REQ, R, P, T, Q, QE).se == pytest.approx(np.sqrt(sum((x - 2 * v) ** 2 for x in s)) / 6)
    with pytest.raises(ValueError, match="pscore"):
        ipw(REQ, R, [0.0] * 6, T)
    with pytest.raises(ValueError, match="one value per row"):
        ipw(REQ, R, P[:5], T)


def test_estimators_agree_with_open_bandit_pipeline() -> None:
    obp = pytest.importorskip("obp.ope")
    rng = np.random.default_rng(1)
    n, actions, slots = 300, 6, 3
    action = rng.integers(0, actions, n)
    position = np.tile(np.arange(slots), n // slots)
    reward = rng.integers(0, 2, n)
    pscore = rng.uniform(0.1, 1.0, n)
    greedy = rng.integers(0, actions, n)
    qhat = rng.uniform(0, 1, (n, actions))
    dist = np.zeros((n, actions, slots))
    dist[np.arange(n), greedy, :] = 1.0  # OBP reads the row's own position; every position must sum to 1
    est_rewards = np.repeat(qhat[:, :, None], slots, axis=2)
    target = (greedy == action).astype(float)
    q_logged, q_target = qhat[np.arange(n), action], qhat[np.arange(n), greedy]
    ours = estimate_all(np.arange(n) // slots, reward, pscore, target, q_logged, q_target)
    kw = {"reward": reward, "action": action, "position": position, "pscore": pscore, "action_dist": dist}
    assert ours["ipw"].value == pytest.approx(obp.InverseProbabilityWeighting().estimate_policy_value(**kw))
    assert ours["snipw"].value == pytest.approx(
        obp.SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**kw))
    assert ours["dr"].value == pytest.approx(
        obp.DoublyRobust().estimate_policy_value(**kw, estimated_rewards_by_reg_model=est_rewards))


def _model_batch(cands: int = 60, seed: int = 0) -> tuple[RankerModel, object]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cfg = tiny("sim_can")
    model = RankerModel(cfg).eval()
    items = rng.choice(1000, cands, replace=False).astype(np.int64)
    cats = rng.integers(0, 4, cands).astype(np.int64)
    batch = build_batch([history(rng, 80)], np.zeros(cands, np.int64), items, cats, NOW, cfg, gsu_of(cfg),
                        lookups=lookups_of(cfg))
    return model, batch


@pytest.mark.parametrize("policy", ["ts", "ucb"])
def test_batched_draws_give_each_draw_its_own_slate_as_if_drawn_alone(policy: str) -> None:
    model, batch = _model_batch()
    params = AGEParams(policy=policy, lam=20.0, dropout=0.3, samples=4)
    top_n = 8
    prep = prepare(model, batch, top_n=top_n)
    seeds = [11, 12, 13, 14]
    together = sample(model, prep, params, [torch.Generator().manual_seed(s) for s in seeds])
    for s, out in zip(seeds, together, strict=True):
        alone = explore(model, batch, params, generator=torch.Generator().manual_seed(s))  # every row moved
        mine = apply_budget(out.pctr, out.score, out.moved, top_n, 3)
        ref = apply_budget(alone.pctr, alone.score, alone.moved, top_n, 3)
        assert mine[0].tolist() == ref[0].tolist() and np.array_equal(mine[2], ref[2])
        assert np.allclose(out.score[out.moved], alone.score[out.moved], atol=1e-6)  # exact where scored
    assert any(apply_budget(o.pctr, o.score, o.moved, top_n, 3)[2].any() for o in together)


def test_served_slate_is_replayable_and_its_propensities_are_draw_shares() -> None:
    model, batch = _model_batch(seed=2)
    params = AGEParams(policy="ts", lam=20.0, dropout=0.3)
    a = age_slate(model, batch, params, top_n=6, budget=2, seed=99, draws=16)
    b = age_slate(model, batch, params, top_n=6, budget=2, seed=99, draws=16)
    assert a.order.tolist() == b.order.tolist() and np.array_equal(a.propensity, b.propensity)
    assert a.propensity is not None and np.all(a.propensity >= 1 / 16) and np.all(a.propensity <= 1)
    assert np.all(np.isclose(a.propensity * 16, np.round(a.propensity * 16)))
    # the served draw is draw 0: the same slate as a single-draw request with the request seed
    one = age_slate(model, batch, params, top_n=6, budget=2, seed=99, draws=0)
    assert one.order.tolist() == a.order.tolist() and one.propensity is None
    slots_greedy = set(greedy_slate(a.pctr, 6).tolist())
    assert set(np.flatnonzero(a.explored).tolist()) == set(a.order.tolist()) - slots_greedy


def test_count_ucb_promotes_unseen_items_and_is_deterministic() -> None:
    model, batch = _model_batch(seed=3)
    counts = np.full(60, 10_000)
    counts[-1] = 0
    out = count_ucb_slate(model, batch, 50.0, counts, top_n=5, budget=1)
    assert out.order[0] == 59 and np.flatnonzero(out.explored).tolist() == [59]
    assert out.propensity is not None and np.all(out.propensity == 1.0)
    none = count_ucb_slate(model, batch, 0.0, counts, top_n=5, budget=1)
    assert none.order.tolist() == greedy_slate(none.pctr, 5).tolist() and not none.explored.any()


def test_served_policies_map_to_their_parameters_and_dropout_ts_needs_no_gradient() -> None:
    assert not policy_params("dropout_ts", 5.0, 0.2).use_gradient
    assert policy_params("ts", 5.0, 0.2).lam == 5.0 and policy_params("ucb", 1.0, 0.1).policy == "ucb"
    with pytest.raises(ValueError, match="policy"):
        policy_params("egreedy", 1.0, 0.1)
    model, batch = _model_batch(seed=4)
    out = age_slate(model, batch, policy_params("dropout_ts", 1.0, 0.4), top_n=6, budget=2, seed=5, draws=8)
    assert set(np.flatnonzero(out.explored).tolist()) == set(out.order.tolist()) - set(greedy_slate(out.pctr, 6))
    assert np.all(out.explored_score[out.explored] > out.pctr[out.explored])
