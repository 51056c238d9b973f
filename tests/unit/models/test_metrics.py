"""AUC, GAUC and logloss on cases small enough to compute by hand."""

from __future__ import annotations

import math

import pytest

from models.metrics import auc, evaluate, gauc, logloss


def test_auc_counts_correctly_ordered_pairs() -> None:
    # positives 0.8, 0.4; negatives 0.6, 0.2: pairs (0.8>0.6, 0.8>0.2, 0.4<0.6, 0.4>0.2) -> 3/4
    assert auc([1, 0, 1, 0], [0.8, 0.6, 0.4, 0.2]) == pytest.approx(0.75)
    assert auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts one half
    assert math.isnan(auc([1, 1], [0.1, 0.2]))


def test_gauc_weights_users_by_sample_count_and_skips_one_class_users() -> None:
    users = ["a", "a", "a", "a", "b", "b", "c", "c", "c"]
    labels = [1, 0, 1, 0, 1, 0, 1, 1, 1]
    scores = [0.8, 0.6, 0.4, 0.2, 0.1, 0.9, 0.5, 0.5, 0.5]
    # a: AUC 0.75 (4 samples); b: AUC 0 (2 samples); c: one class -> left out. (4*0.75 + 2*0) / 6 = 0.5
    assert gauc(users, labels, scores) == pytest.approx(0.5)
    assert math.isnan(gauc(["c", "c"], [1, 1], [0.2, 0.3]))
    with pytest.raises(ValueError, match="one length"):
        gauc(["a"], [1, 0], [0.1, 0.2])


def test_logloss_is_mean_negative_log_likelihood_and_clipped() -> None:
    expected = -(math.log(0.8) + math.log(1 - 0.4)) / 2
    assert logloss([1, 0], [0.8, 0.4]) == pytest.approx(expected)
    assert logloss([1, 0], [0.0, 1.0]) == pytest.approx(-math.log(1e-7), rel=1e-6)  # finite, not inf
    assert logloss([1, 1], [0.5, 0.5]) == pytest.approx(math.log(2))  # one class is fine


def test_evaluate_reports_all_three() -> None:
    result = evaluate([0, 0, 1, 1], [1, 0, 1, 0], [0.9, 0.1, 0.3, 0.7])
    assert result["auc"] == pytest.approx(0.75)  # pairs: 0.9>0.1, 0.9>0.7, 0.3>0.1, 0.3<0.7 -> 3/4
    assert result["gauc"] == pytest.approx(0.5)  # user 0 perfectly ordered (1.0), user 1 reversed (0.0)
    assert result["logloss"] == pytest.approx(logloss([1, 0, 1, 0], [0.9, 0.1, 0.3, 0.7]))
