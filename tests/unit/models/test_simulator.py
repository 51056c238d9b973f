"""The exploration simulator: deterministic for a seed, a real cold start (fresh, informationless rows for new
items), a catalogue that turns over, and strategies that really differ."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.simulator import STRATEGIES, Environment, SimConfig, _warm_start, model_config, plot, run_seed, simulate

SMALL = SimConfig(rounds=4, users_per_round=4, candidates=10, top_n=3, users=20, history=60, live=2, lifetime=3,
                  warm=600, warm_epochs=1, update_every=2, update_steps=2, update_batch=64, buffer=500, samples=4,
                  max_impressions=3)  # fmt: skip


def test_a_seed_gives_the_same_run_and_another_seed_another() -> None:
    a = run_seed(SMALL, 3)
    b = run_seed(SMALL, 3)
    assert a == b
    assert set(a) == {*STRATEGIES, "oracle"} and all(len(c) == SMALL.rounds for c in a.values())
    assert all(np.all(np.diff(c) >= 0) for c in a.values())  # cumulative
    assert run_seed(SMALL, 4) != a


def test_a_strategy_does_not_depend_on_which_others_run() -> None:
    full = run_seed(SMALL, 1)
    alone = run_seed(SMALL, 1, ("age_ts",))
    assert alone["age_ts"] == full["age_ts"]


def test_the_catalogue_turns_over_one_item_per_slot() -> None:
    env = Environment(SMALL, 0, model_config())
    items, slots = env.items, SMALL.categories * SMALL.live
    seen = set()
    for r in range(SMALL.rounds):
        live = items.live(r)
        assert len(live) == slots and len(set(live.tolist())) == slots
        assert np.all((items.born[live] <= r) & (r < items.dies[live]))
        assert np.array_equal(items.category[live], np.arange(slots) // SMALL.live)
        seen |= set(live.tolist())
    assert np.array_equal(np.flatnonzero(items.established), np.sort(items.live(0)))
    assert len(seen) > slots  # new items were born during the run
    user, cands, p, _ = env.round(0)
    per_request = cands.reshape(SMALL.users_per_round, SMALL.candidates)
    assert all(len(set(row.tolist())) == SMALL.candidates for row in per_request)  # distinct candidates
    assert np.all((p > 0) & (p < 1)) and len(user) == len(cands)


def test_new_items_get_fresh_buckets_and_informationless_rows() -> None:
    env = Environment(SMALL, 2, model_config())
    buckets = env.items.bucket
    assert len(set(buckets.tolist())) == len(buckets)  # no two items share a row
    history = set(env.short[0][env.short[3]].tolist()) | set(env.long[0][env.long[4]].tolist())
    assert not history & set(buckets.tolist())  # and no item shares a row with a history behaviour
    table = _warm_start(env, SMALL, 2)[0].embedding.item.weight.detach()
    new, est = buckets[~env.items.established], buckets[env.items.established]
    assert torch.count_nonzero(table[new]) == 0
    assert torch.count_nonzero(table[est]) > 0
    mean_cfg = replace(SMALL, new_init="mean")
    table = _warm_start(env, mean_cfg, 2)[0].embedding.item.weight.detach()
    assert torch.allclose(table[new], table[est].mean(0).expand(len(new), -1))


def test_summary_and_plot(tmp_path: Path) -> None:
    result = simulate(SMALL, [0, 1], ("greedy", "age_ts"))
    rows = result["strategies"]
    assert rows["greedy"]["lift_vs_greedy"] == 0.0
    assert rows["age_ts"]["clicks_mean"] == pytest.approx(np.mean(rows["age_ts"]["clicks"]))
    assert result["oracle"]["clicks_mean"] > 0
    plot(result, str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_bad_config_is_named() -> None:
    with pytest.raises(ValueError, match="top_n"):
        SimConfig(top_n=50, candidates=10)
    with pytest.raises(ValueError, match="candidates"):
        SimConfig(candidates=100, categories=20, live=2)
    with pytest.raises(ValueError, match="new_init"):
        SimConfig(new_init="random")
    with pytest.raises(ValueError, match="unknown strategies"):
        simulate(SMALL, [0], ("bogus",))
