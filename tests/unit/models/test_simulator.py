"""The exploration simulator is deterministic for a seed, and its strategies really differ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.simulator import STRATEGIES, SimConfig, plot, run_seed, simulate

SMALL = SimConfig(rounds=4, users_per_round=4, candidates=10, top_n=3, users=20, history=60, new_every=2, warm=600,
                  update_every=2, update_steps=2, update_batch=64, buffer=500, samples=4)  # fmt: skip


def test_a_seed_gives_the_same_run_and_another_seed_another() -> None:
    a = run_seed(SMALL, 3)
    b = run_seed(SMALL, 3)
    assert a == b
    assert set(a) == set(STRATEGIES) and all(len(c) == SMALL.rounds for c in a.values())
    assert all(np.all(np.diff(c) >= 0) for c in a.values())  # cumulative
    assert run_seed(SMALL, 4) != a


def test_a_strategy_does_not_depend_on_which_others_run() -> None:
    full = run_seed(SMALL, 1)
    alone = run_seed(SMALL, 1, ("age_ts",))
    assert alone["age_ts"] == full["age_ts"]


def test_summary_and_plot(tmp_path: Path) -> None:
    result = simulate(SMALL, [0, 1], ("greedy", "age_ts"))
    rows = result["strategies"]
    assert rows["greedy"]["lift_vs_greedy"] == 0.0
    assert rows["age_ts"]["clicks_mean"] == pytest.approx(np.mean(rows["age_ts"]["clicks"]))
    plot(result, str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_bad_config_is_named() -> None:
    with pytest.raises(ValueError, match="top_n"):
        SimConfig(top_n=50, candidates=10)
    with pytest.raises(ValueError, match="unknown strategies"):
        simulate(SMALL, [0], ("bogus",))
