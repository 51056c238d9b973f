"""AGE (models/age.py): the gradient step raises f, λ = 0 is the plain model, the gate and eligibility decide who
moves, dropout sampling is functional and reproducible, the DGU trains and round-trips through an artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models import artifacts
from models.age import AGEParams, DynamicGatingUnit, _grad, _unit, dropout_probs, explore, take_candidates
from models.dgu import item_embeddings, train_dgu
from models.features import build_batch
from models.ranker import RankerModel, score
from models.testing import NOW, gsu_of, history, lookups_of, tiny


def _setup(variant: str = "sim_can", cands: int = 40, seed: int = 0) -> tuple[RankerModel, object, np.ndarray,
                                                                             np.ndarray, object]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cfg = tiny(variant)
    model = RankerModel(cfg).eval()
    hist = history(rng, 80)
    items = rng.choice(1000, cands, replace=False).astype(np.int64)
    cats = rng.integers(0, 4, cands).astype(np.int64)
    gsu = gsu_of(cfg)
    batch = build_batch([hist], np.zeros(cands, np.int64), items, cats, NOW, cfg, gsu, lookups=lookups_of(cfg))
    return model, batch, items, cats, (hist, gsu)


@pytest.mark.parametrize("variant", ["din", "sim_can"])
def test_small_step_along_normalised_gradient_raises_f(variant: str) -> None:
    model, batch, *_ = _setup(variant)
    h = model.embedding.candidate(batch.cand_item, batch.cand_cat).detach()
    logit, _, grad = _grad(model, batch, h)
    with torch.no_grad():
        up = model.over(model.over_input(batch, h + 1e-3 * _unit(grad)))
        down = model.over(model.over_input(batch, h - 1e-3 * _unit(grad)))
    assert grad.shape == h.shape and bool((grad.norm(dim=-1) > 0).all())
    assert bool((up > logit).all()), "a small step along ĝ must raise every candidate's score"
    assert bool((down < logit).all())


@pytest.mark.parametrize("policy", ["ts", "ucb"])
def test_lambda_zero_reproduces_plain_scores_exactly(policy: str) -> None:
    model, batch, items, cats, (hist, gsu) = _setup()
    plain = score(model, hist, items, cats, NOW, gsu, lookups=lookups_of(model.config))
    out = explore(model, batch, AGEParams(policy=policy, lam=0.0), generator=torch.Generator().manual_seed(1))
    assert np.array_equal(out.pctr, plain)
    assert np.array_equal(out.score, plain)
    assert not out.moved.any()


def test_explored_scores_move_with_the_signed_uncertainty() -> None:
    model, batch, *_ = _setup()
    gen = torch.Generator().manual_seed(0)
    out = explore(model, batch, AGEParams(policy="ts", lam=5.0, dropout=0.3), generator=gen)
    assert out.moved.all()  # no DGU, no eligibility limit: every row with δ ≠ 0 moves
    up = out.delta > 0
    assert up.any() and (~up).any()
    assert (out.score[up] > out.pctr[up]).all()  # positive δ: a step up the gradient raises f
    assert (out.score[~up] < out.pctr[~up]).all()


def test_ucb_uncertainty_is_a_nonnegative_spread_and_grows_with_dropout() -> None:
    model, batch, *_ = _setup()
    small = explore(model, batch, AGEParams(policy="ucb", dropout=0.05, samples=30),
                    generator=torch.Generator().manual_seed(0))
    big = explore(model, batch, AGEParams(policy="ucb", dropout=0.5, samples=30),
                  generator=torch.Generator().manual_seed(0))
    assert (small.delta >= 0).all() and (big.delta >= 0).all()
    assert big.delta.mean() > small.delta.mean()


def test_pgd_stays_within_the_ball_and_raises_f_at_least_as_fgm_direction() -> None:
    model, batch, *_ = _setup()
    fgm = explore(model, batch, AGEParams(policy="ucb", lam=30.0, dropout=0.3, pgd_steps=1),
                  generator=torch.Generator().manual_seed(0))
    pgd = explore(model, batch, AGEParams(policy="ucb", lam=30.0, dropout=0.3, pgd_steps=4),
                  generator=torch.Generator().manual_seed(0))
    assert np.array_equal(fgm.delta, pgd.delta)  # the same draws
    assert (pgd.score >= fgm.pctr).all()  # UCB moves up only
    assert not np.array_equal(pgd.score, fgm.score)


def test_gate_and_eligibility_decide_who_moves() -> None:
    model, batch, *_ = _setup()
    dgu = DynamicGatingUnit(model.config.behavior_dim, 8)
    eligible = np.arange(batch.n_candidates) % 3 != 0
    out = explore(model, batch, AGEParams(policy="ucb", lam=1.0, dropout=0.2), dgu=dgu, eligible=eligible,
                  generator=torch.Generator().manual_seed(0))
    assert out.dgu is not None
    assert np.array_equal(out.gate, out.pctr > out.dgu)
    assert np.array_equal(out.moved, out.gate & eligible & (out.delta != 0))
    assert np.array_equal(out.score[~out.moved], out.pctr[~out.moved])
    # a gate above every pCTR lets nothing through
    with torch.no_grad():
        dgu.net[-1].bias.fill_(50.0)
    closed = explore(model, batch, AGEParams(policy="ucb", lam=1.0, dropout=0.2), dgu=dgu,
                     generator=torch.Generator().manual_seed(0))
    assert not closed.gate.any() and not closed.moved.any()


def test_dropout_sampling_is_functional_and_seeded() -> None:
    model, batch, *_ = _setup()
    x = model.over_input(batch, model.embedding.candidate(batch.cand_item, batch.cand_cat)).detach()
    a = dropout_probs(model.over, x, 0.2, 5, torch.Generator().manual_seed(3))
    b = dropout_probs(model.over, x, 0.2, 5, torch.Generator().manual_seed(3))
    assert a.shape == (5, batch.n_candidates) and torch.equal(a, b)
    assert not torch.equal(a[0], a[1])
    assert not model.training  # never switched to train mode
    zero = dropout_probs(model.over, x, 0.0, 2, None)
    assert torch.allclose(zero[0], torch.sigmoid(model.over(x)).detach())


def test_dropout_free_model_still_samples() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = tiny("din", dropout=0.0)
    model = RankerModel(cfg).eval()
    batch = build_batch([history(rng, 20)], np.zeros(9, np.int64), np.arange(9), np.zeros(9), NOW, cfg)
    x = model.over_input(batch, model.embedding.candidate(batch.cand_item, batch.cand_cat)).detach()
    draws = dropout_probs(model.over, x, 0.3, 4, torch.Generator().manual_seed(0))
    assert not torch.equal(draws[0], draws[1])


def test_take_candidates_scores_the_same_rows() -> None:
    model, batch, *_ = _setup()
    rows = torch.tensor([3, 0, 7])
    with torch.no_grad():
        full = model(batch).logits
        part = model(take_candidates(batch, rows)).logits
    assert torch.allclose(full[rows], part, atol=1e-6)


def test_train_dgu_learns_item_ctr_without_touching_the_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = tiny("sim_can")
    model = RankerModel(cfg).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(0)
    items = rng.integers(0, 20, 6000)
    ctr = np.where(items < 10, 0.05, 0.6)
    labels = (rng.random(6000) < ctr).astype(np.uint8)
    lookups = lookups_of(cfg)
    dgu = train_dgu(model, items, items % 4, labels, epochs=15, lr=1e-2, batch_size=256, seed=0, lookups=lookups)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed"
    with torch.no_grad():
        p = torch.sigmoid(dgu(item_embeddings(model, np.arange(20), np.arange(20) % 4, lookups))).numpy()
    assert p[:10].max() < p[10:].min()
    assert abs(p[:10].mean() - 0.05) < 0.1 and abs(p[10:].mean() - 0.6) < 0.15

    version = artifacts.save(model, cfg, tmp_path / "a", dgu=dgu, lookups=lookups,
                             item_index=gsu_of(cfg).soft.index)
    loaded = artifacts.load(tmp_path / "a")
    assert loaded.version == version and loaded.dgu is not None
    for k, v in dgu.state_dict().items():
        assert torch.equal(loaded.dgu.state_dict()[k], v)
    artifacts.save(model, cfg, tmp_path / "b", lookups=lookups, item_index=gsu_of(cfg).soft.index)
    assert artifacts.load(tmp_path / "b").dgu is None


def test_dgu_file_tampering_is_refused(tmp_path: Path) -> None:
    cfg = tiny("din")
    model = RankerModel(cfg).eval()
    artifacts.save(model, cfg, tmp_path / "a", dgu=DynamicGatingUnit(cfg.behavior_dim, 4))
    (tmp_path / "a" / "dgu.json").write_text('{"in_dim": 3, "hidden": 4}')
    with pytest.raises(artifacts.ArtifactError, match=r"dgu\.json"):
        artifacts.load(tmp_path / "a")
    with pytest.raises(artifacts.ArtifactError, match="in_dim"):
        artifacts.save(model, cfg, tmp_path / "b", dgu=DynamicGatingUnit(cfg.behavior_dim + 1, 4))


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="policy"):
        AGEParams(policy="greedy")
    with pytest.raises(ValueError, match="lam"):
        AGEParams(lam=-1.0)
    with pytest.raises(ValueError, match="samples"):
        AGEParams(samples=0)
