"""`longrank export-log --format obp` read back by Open Bandit Pipeline itself: the arrays have OBP's names and
shapes, OBP's IPW / SNIPW / DR on them equal `longrank ope`'s, and greedy's slots are where the logged pCTR puts
them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cli.export_log import to_obp
from cli.main import main


def _record(i: int, order: list[int], explored: list[bool], propensity: list[float]) -> dict[str, Any]:
    pctr = [0.9, 0.5, 0.4, 0.2, 0.1]
    return {"request_id": f"r{i}", "ts": 1000.0 + i, "user_id": f"u{i % 2}", "model_version": "v",
            "policy": "ts", "params": {}, "candidates": [10, 20, 30, 40, 50], "categories": [None] * 5,
            "pctr": pctr, "explored_score": pctr, "eligible": [True] * 5, "order": order, "explored": explored,
            "propensity": propensity, "degraded": False}  # fmt: skip


RECORDS = [
    _record(0, [0, 1, 2], [False, False, False], [1.0, 0.75, 0.75]),
    _record(1, [0, 3, 1], [False, True, False], [1.0, 0.25, 0.25]),
    _record(2, [4, 0, 1], [True, False, False], [0.125, 0.875, 0.5]),
    _record(3, [0, 1, 2], [False, False, False], [1.0, 0.75, 0.75]),
]
CLICKS = {("u0", 10): np.asarray([1001]), ("u1", 40): np.asarray([1002]), ("u0", 50): np.asarray([1003])}


def test_obp_reads_the_export_and_agrees_with_longrank_ope(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                           ) -> None:  # fmt: skip
    obp = pytest.importorskip("obp.ope")
    arrays = to_obp(RECORDS, CLICKS, window_s=100)
    n = arrays["n_rounds"]
    assert n == 12 and arrays["len_list"] == 3 and arrays["n_actions"] == 5
    assert arrays["reward"].tolist() == [1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0]
    assert arrays["greedy_action"].tolist() == [0, 1, 2] * 4  # top 3 by the logged pCTR, whatever was shown
    np.savez(tmp_path / "f.npz", **arrays)
    assert main(["ope", "--feedback", str(tmp_path / "f.npz"), "--json"]) == 0
    ours = json.loads(capsys.readouterr().out)["estimates"]
    dist = np.zeros((n, arrays["n_actions"], arrays["len_list"]))
    dist[np.arange(n), arrays["greedy_action"], :] = 1.0
    q = np.zeros((n, arrays["n_actions"], arrays["len_list"]))
    item_pctr = dict(zip(arrays["action"].tolist(), arrays["pctr"].tolist(), strict=False))
    for a, p in item_pctr.items():
        q[:, a, :] = p
    kw = {"reward": arrays["reward"], "action": arrays["action"], "position": arrays["position"],
          "pscore": arrays["pscore"], "action_dist": dist}  # fmt: skip
    assert ours["ipw"]["value"] == pytest.approx(obp.InverseProbabilityWeighting().estimate_policy_value(**kw),
                                                 abs=1e-6)  # fmt: skip
    assert ours["snipw"]["value"] == pytest.approx(
        obp.SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**kw), abs=1e-6)
    assert ours["dr"]["value"] == pytest.approx(
        obp.DoublyRobust().estimate_policy_value(**kw, estimated_rewards_by_reg_model=q), abs=1e-6)
