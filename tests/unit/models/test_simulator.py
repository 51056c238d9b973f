"""The exploration simulator: deterministic for a seed, a real cold start (fresh, informationless rows for new
items), a catalogue that turns over, and strategies that really differ."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.sim_env import Environment
from models.sim_ope import ope_check
from models.simulator import (
    KNOBS,
    MOVED,
    STRATEGIES,
    SimConfig,
    _warm_start,
    model_config,
    plot,
    run_seed,
    run_variants,
    simulate,
    summarise,
)

SMALL = SimConfig(rounds=4, users_per_round=4, candidates=10, top_n=3, users=20, history=60, live=2, lifetime=3,
                  warm=600, warm_epochs=1, update_every=2, update_steps=2, update_batch=64, buffer=500, samples=4,
                  max_impressions=3)  # fmt: skip


def test_a_seed_gives_the_same_run_and_another_seed_another() -> None:
    a = run_seed(SMALL, 3)
    b = run_seed(SMALL, 3)
    assert a == b
    curves = {k: c for k, c in a.items() if not k.endswith(MOVED)}
    assert set(curves) == {*STRATEGIES, "oracle"} and all(len(c) == SMALL.rounds for c in curves.values())
    assert all(np.all(np.diff(c) >= 0) for c in curves.values())  # cumulative
    assert a[f"greedy{MOVED}"] == [0] and 0 <= a[f"age_ts{MOVED}"][0] <= SMALL.rounds * SMALL.users_per_round
    assert run_seed(SMALL, 4) != a


def test_a_strategy_does_not_depend_on_which_others_run() -> None:
    full = run_seed(SMALL, 1)
    for name in ("age_ts", "lints_item", "egreedy"):
        assert run_seed(SMALL, 1, (name,))[name] == full[name]


def test_a_variant_runs_with_its_own_knob() -> None:
    big = replace(SMALL, rounds=6, max_impressions=50, budget=3)
    runs = run_variants(big, 5, [("e0", "egreedy", {"epsilon": 0.0}), ("e0b", "egreedy", {"epsilon": 0.0}),
                                 ("e1", "egreedy", {"epsilon": 1.0})])
    assert runs["e0"] == runs["e0b"]  # same strategy, same knob, same streams
    assert runs["e1"] != runs["e0"]  # the knob is the variant's own


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
    result = simulate(SMALL, [0, 1], ("greedy", "age_ts", "age_ts_no_dgu"))
    rows = result["strategies"]
    assert rows["greedy"]["lift_vs_greedy"] == 0.0 and rows["greedy"]["headroom_share_mean"] == 0.0
    assert rows["age_ts"]["clicks_mean"] == pytest.approx(np.mean(rows["age_ts"]["clicks"]))
    assert result["oracle"]["clicks_mean"] > 0
    assert set(result["age_ts_vs"]) == {"greedy", "age_ts_no_dgu"}
    plot(result, str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_headroom_shares_and_paired_differences() -> None:
    rounds = np.arange(1, 4, dtype=np.float64)
    curves = {"greedy": np.stack([10 * rounds, 20 * rounds]), "oracle": np.stack([20 * rounds, 30 * rounds]),
              "age_ts": np.stack([15 * rounds, 26 * rounds]), "egreedy": np.stack([12 * rounds, 21 * rounds])}
    out = summarise(curves, SMALL, [0, 1], 1.0)
    assert out["headroom"]["clicks_mean"] == 30.0  # (60 - 30 + 90 - 60) / 2
    assert out["strategies"]["age_ts"]["headroom_share"] == [0.5, 0.6]
    assert out["strategies"]["egreedy"]["headroom_share"] == [0.2, 0.1]
    assert out["strategies"]["age_ts"]["headroom_share_std"] == pytest.approx(np.std([0.5, 0.6], ddof=1), abs=1e-4)
    assert out["age_ts_vs"]["egreedy"]["diff_mean"] == pytest.approx(0.4)
    assert out["age_ts_vs"]["egreedy"]["diff_se"] == pytest.approx(np.std([0.3, 0.5], ddof=1) / np.sqrt(2), abs=1e-4)
    assert out["best"] == "age_ts"


def test_every_exploring_strategy_has_a_knob_of_the_config() -> None:
    fields = set(SimConfig.__dataclass_fields__)
    assert {k for k, _ in KNOBS.values()} <= fields
    assert set(KNOBS) == set(STRATEGIES) - {"greedy", "age_ts_no_dgu"}
    assert all(len(grid) == len(KNOBS["age_ts"][1]) for _, grid in KNOBS.values())  # the same tuning effort


def test_ope_check_reports_three_estimates_of_greedy() -> None:
    out = ope_check(replace(SMALL, lam=50.0, dropout=0.3), 7, "age_ts", draws=8, rounds=4)
    assert set(out["estimates"]) == {"ipw", "snipw", "dr"}
    assert 0 < out["min_pscore"] <= 1 and out["rows"] == 4 * SMALL.users_per_round * SMALL.top_n
    assert 0 <= out["greedy_true_click_rate"] <= 1
    with pytest.raises(ValueError, match="strategy"):
        ope_check(SMALL, 7, "greedy")


def test_bad_config_is_named() -> None:
    with pytest.raises(ValueError, match="top_n"):
        SimConfig(top_n=50, candidates=10)
    with pytest.raises(ValueError, match="candidates"):
        SimConfig(candidates=100, categories=20, live=2)
    with pytest.raises(ValueError, match="new_init"):
        SimConfig(new_init="random")
    with pytest.raises(ValueError, match="unknown strategies"):
        simulate(SMALL, [0], ("bogus",))
