"""`longrank ope`: estimates from an export, and clear refusals (no file, missing arrays, unlogged propensities)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli.main import main
from models.bandits.ope import estimate_all


def _export(path: Path, logged: bool = True, drop: str | None = None) -> None:
    arrays = {
        "reward": np.asarray([1, 0, 0, 1, 1, 0]), "action": np.asarray([3, 1, 4, 1, 0, 2]),
        "position": np.asarray([0, 1, 0, 1, 0, 1]), "pscore": np.asarray([0.5, 1.0, 0.25, 0.5, 1.0, 0.8]),
        "pscore_logged": np.full(6, logged), "round": np.asarray([0, 0, 1, 1, 2, 2]),
        "pctr": np.asarray([0.4, 0.2, 0.1, 0.3, 0.6, 0.5]), "greedy_action": np.asarray([3, 1, 2, 1, 0, 4]),
        "greedy_pctr": np.asarray([0.4, 0.2, 0.3, 0.3, 0.6, 0.1]),
    }  # fmt: skip
    if drop:
        arrays.pop(drop)
    np.savez(path, **arrays)


def test_ope_prints_the_three_estimates_of_greedy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _export(tmp_path / "f.npz")
    assert main(["ope", "--feedback", str(tmp_path / "f.npz"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    target = np.asarray([1, 1, 0, 1, 1, 0], dtype=float)
    want = estimate_all([0, 0, 1, 1, 2, 2], [1, 0, 0, 1, 1, 0], [0.5, 1.0, 0.25, 0.5, 1.0, 0.8], target,
                        [0.4, 0.2, 0.1, 0.3, 0.6, 0.5], [0.4, 0.2, 0.3, 0.3, 0.6, 0.1])  # fmt: skip
    assert out["rows"] == 6 and out["responses"] == 3
    assert out["share_of_rows_matching"] == pytest.approx(4 / 6, abs=1e-4)
    for name in ("ipw", "snipw", "dr"):
        assert out["estimates"][name]["value"] == pytest.approx(want[name].value, abs=1e-6)


def test_ope_refuses_what_it_cannot_estimate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ope", "--feedback", str(tmp_path / "none.npz")]) == 2
    assert "no such file" in capsys.readouterr().err
    _export(tmp_path / "u.npz", logged=False)
    assert main(["ope", "--feedback", str(tmp_path / "u.npz")]) == 2
    assert "pscore: 6 of 6 rows have no logged propensity" in capsys.readouterr().err
    _export(tmp_path / "m.npz", drop="greedy_action")
    assert main(["ope", "--feedback", str(tmp_path / "m.npz")]) == 2
    assert "greedy_action" in capsys.readouterr().err
