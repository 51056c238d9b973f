"""Offline ranking metrics: AUC, GAUC and logloss (scikit-learn underneath).

- AUC: ``sklearn.metrics.roc_auc_score`` over all samples.
- GAUC: the per-user AUC averaged over the users that have both a positive and a negative sample, each user
  weighted by their number of samples (users with one class only have no AUC and are left out, weight and all).
- logloss: ``sklearn.metrics.log_loss`` with the probabilities clipped to [1e-7, 1 - 1e-7] so one confident
  mistake is large but finite.
Each returns ``nan`` where it is undefined (one class only), rather than raising in the middle of a training run.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from sklearn.metrics import log_loss, roc_auc_score

EPS = 1e-7


def auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    y = np.asarray(labels)
    if len(y) == 0 or y.min() == y.max():
        return math.nan
    return float(roc_auc_score(y, np.asarray(scores, dtype=np.float64)))


def gauc(users: npt.ArrayLike, labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Sample-count-weighted mean of per-user AUC over users with both labels."""
    u = np.asarray(users)
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if not (len(u) == len(y) == len(s)):
        raise ValueError(f"users, labels and scores must have one length, got {len(u)}, {len(y)}, {len(s)}")
    order = np.argsort(u, kind="stable")
    u, y, s = u[order], y[order], s[order]
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]]) if len(u) else np.zeros(0, dtype=np.intp)
    ends = np.r_[starts[1:], len(u)]
    total = 0.0
    weight = 0
    for start, end in zip(starts, ends, strict=True):
        yu = y[start:end]
        if yu.min() == yu.max():
            continue
        n = int(end - start)
        total += n * float(roc_auc_score(yu, s[start:end]))
        weight += n
    return total / weight if weight else math.nan


def logloss(labels: npt.ArrayLike, probs: npt.ArrayLike) -> float:
    y = np.asarray(labels)
    if len(y) == 0:
        return math.nan
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    return float(log_loss(y, p, labels=[0, 1]))


def evaluate(users: npt.ArrayLike, labels: npt.ArrayLike, probs: npt.ArrayLike) -> dict[str, float]:
    """All three metrics of one split: {"auc", "gauc", "logloss"}."""
    return {"auc": auc(labels, probs), "gauc": gauc(users, labels, probs), "logloss": logloss(labels, probs)}
