"""RankerModel on tiny configs: every variant's shapes, masking, broadcasting, gradients and eval determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from models.features import Batch
from models.ranker import RankerModel
from models.testing import VARIANTS, random_batch, tiny


def model_and_batch(variant: str, seed: int = 0, **overrides: object) -> tuple[RankerModel, Batch]:
    torch.manual_seed(seed)
    cfg = tiny(variant, **overrides)
    return RankerModel(cfg).eval(), random_batch(cfg, np.random.default_rng(seed))


@pytest.mark.parametrize("variant", VARIANTS)
def test_shapes_and_finite_even_for_all_padding_rows(variant: str) -> None:
    model, batch = model_and_batch(variant)
    out = model(batch)
    assert out.logits.shape == (batch.n_candidates,)
    assert torch.isfinite(out.logits).all()  # user 0 / candidate 0 have no behaviours at all


@pytest.mark.parametrize("variant", VARIANTS)
def test_padded_positions_change_nothing(variant: str) -> None:
    model, batch = model_and_batch(variant, seed=1)
    before = model(batch)
    rng = np.random.default_rng(99)
    changed = dataclasses.replace(batch)
    for prefix in ("short", "long", "full"):
        mask = getattr(batch, f"{prefix}_mask")
        if mask is None:
            continue
        for field in ("item", "cat", "action", "dt", "tag"):
            value = getattr(batch, f"{prefix}_{field}", None)
            if value is None:
                continue
            noise = torch.from_numpy(rng.integers(1, 7, tuple(value.shape)))
            setattr(changed, f"{prefix}_{field}", torch.where(mask, value, noise))
    assert not torch.equal(changed.short_item, batch.short_item)
    if batch.long_rel is not None and batch.long_mask is not None:
        changed.long_rel = torch.where(batch.long_mask, batch.long_rel, torch.full_like(batch.long_rel, 0.7))
    after = model(changed)
    torch.testing.assert_close(after.logits, before.logits)


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_user_broadcast_equals_repeated_user_rows(variant: str) -> None:
    model, batch = model_and_batch(variant, seed=2)
    batch.cand_cat[1], batch.cand_item[3] = batch.cand_cat[0], batch.cand_item[2]  # shared ids (CAN dedupes them)
    one = dataclasses.replace(batch, user_of=torch.zeros_like(batch.user_of))
    user_side = ("now", "short_item", "short_cat", "short_action", "short_mask",
                 "full_item", "full_cat", "full_action", "full_mask")  # fmt: skip
    for name in user_side:
        value = getattr(batch, name)
        if value is not None:
            setattr(one, name, value[2:3])  # user 2 has behaviours
    c = batch.n_candidates
    repeated = dataclasses.replace(one, user_of=torch.arange(c))
    for name in user_side:
        value = getattr(one, name)
        if value is not None:
            setattr(repeated, name, value.expand(c, *value.shape[1:]).clone())
    torch.testing.assert_close(model(one).logits, model(repeated).logits)


def test_eval_mode_is_deterministic_and_train_mode_uses_dropout() -> None:
    model, batch = model_and_batch("sim_can", seed=3, dropout=0.5)
    torch.testing.assert_close(model(batch).logits, model(batch).logits, rtol=0, atol=0)
    model.train()
    torch.manual_seed(0)
    a = model(batch).logits
    b = model(batch).logits
    assert not torch.equal(a, b)


def grad_rows(table: torch.nn.Embedding) -> set[int]:
    grad = table.weight.grad
    return set() if grad is None else set(torch.nonzero(grad.abs().sum(1)).flatten().tolist())


def test_main_loss_reaches_short_embeddings_and_coaction_tables() -> None:
    model, batch = model_and_batch("sim_can", seed=4, dropout=0.0)
    model.train()
    model(batch).logits.sum().backward()
    short_rows = set(batch.short_item[batch.short_mask].tolist())
    assert short_rows <= grad_rows(model.embedding.item)
    assert 0 not in grad_rows(model.embedding.item)  # the padding row never learns
    assert model.coaction is not None
    assert set(batch.cand_item.tolist()) == grad_rows(model.coaction.induce_item)


def test_statistics_are_standardised_clipped_and_constant_ones_silenced() -> None:
    """StatsArch: the training split's mean and spread; a statistic that never varied in training (MovieLens: the
    target is never in its own history) contributes nothing whatever its serving value, and extreme values are
    clipped, so a history far longer than any in training cannot saturate the model."""
    model, batch = model_and_batch("sim_hybrid", seed=4)
    assert model.stats is not None and batch.cand_stats is not None
    train = torch.randn(200, model.config.n_stats) * 3 + 1
    train[:, 0] = 0.0  # never varies
    model.stats.fit(train)
    torch.testing.assert_close(model.stats.mean, train.mean(0))
    x = batch.cand_stats.clone()
    x[:, 0] = 1e6
    with torch.no_grad():
        out = model.stats(x)[:, : model.config.n_stats]  # the standardised view (the encoding follows it)
    assert bool((out[:, 0] == 0).all()) and float(out.abs().max()) <= model.stats.CLIP
    edges = model.stats.edges
    assert edges.shape == (model.config.n_stats, model.config.stats_bins + 1)
    assert bool((edges[1:, 1:] >= edges[1:, :-1]).all())  # the training quantiles, ascending
    with torch.inference_mode():
        a = model(dataclasses.replace(batch, cand_stats=x)).logits
        b = model(dataclasses.replace(batch, cand_stats=torch.where(torch.arange(x.shape[1]) == 0, 0.0, x))).logits
    torch.testing.assert_close(a, b)


def test_search_tags_and_relevance_steer_the_esu() -> None:
    """The ESU sees which search found a slot, whether it is the target item, and its relevance: changing them
    (same behaviours) changes the scores."""
    model, batch = model_and_batch("sim_hybrid", seed=6)
    assert batch.long_tag is not None and batch.long_rel is not None and batch.long_mask is not None
    with torch.inference_mode():
        before = model(batch).logits
        retagged = model(dataclasses.replace(batch, long_tag=torch.where(batch.long_mask, 2, 0))).logits
        rel = model(dataclasses.replace(batch, long_rel=batch.long_rel * 0.0)).logits
    rows = batch.long_mask.any(1)
    assert not torch.allclose(before[rows], retagged[rows]) and not torch.allclose(before[rows], rel[rows])
    torch.testing.assert_close(before[~rows], retagged[~rows])  # nothing retrieved: nothing to steer


def test_missing_branch_inputs_are_reported() -> None:
    model, batch = model_and_batch("sim_hard")
    with pytest.raises(ValueError, match=r"batch\.long_item is missing"):
        model(dataclasses.replace(batch, long_item=None))


def test_variants_have_their_branches() -> None:
    arch = {v: RankerModel(tiny(v)) for v in VARIANTS}
    has = {v: (m.short.attention is not None, m.long is not None, m.full is not None, m.coaction is not None,
               m.stats is not None, m.config.vocabulary, m.config.gsu) for v, m in arch.items()}  # fmt: skip
    assert has == {
        "dnn": (False, False, False, False, False, False, "none"),
        "din": (True, False, False, False, False, False, "none"),
        "din_long": (True, False, True, False, False, False, "none"),
        "sim_hard": (True, True, False, False, True, True, "hard"),
        "sim_soft": (True, True, False, False, True, True, "soft"),
        "sim_hybrid": (True, True, False, False, True, True, "hybrid"),
        "can": (True, False, False, True, False, False, "none"),
        "sim_can": (True, True, False, True, True, True, "hybrid"),
    }
    assert not any(isinstance(v, torch.optim.Optimizer) for m in arch.values() for v in vars(m).values())
