"""Off-policy estimators of a target policy's click rate per shown slot from an explored log (``longrank ope``).

The log is one row per shown slot: request index, the shown item's reward r (click), its logged propensity p (the
probability that the logging policy put that item at that slot, ``models.bandits.slate.position_propensities``),
the target policy's probability w_e of putting the same item at the same slot (1 or 0 for a deterministic
target such as greedy), the reward model's estimate q̂ of the shown item (the logged pCTR) and q̂_e, the estimate of
the item the target puts at that slot. Position-wise ("independent") slate estimators, as Open Bandit Pipeline's
IPW / SNIPW / DR with a ``position`` array:

    IPW    V = mean(w·r)                      w = w_e / p
    SNIPW  V = mean(w·r) / mean(w)
    DR     V = mean(q̂_e + w·(r − q̂))

Standard errors are clustered by request (the slots of one response share their randomness): with S_i the sum
of the per-row terms of request i, n_i its rows and N = Σ n_i, SE(V) = sqrt(Σ_i (S_i − V·n_i)²) / N (for SNIPW
the same with the ratio's linearisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Estimate:
    value: float
    se: float

    def to_dict(self) -> dict[str, float | None]:
        """JSON-ready; an undefined estimate (SNIPW without any matching row) is null."""
        return {k: None if not np.isfinite(v) else round(v, 6) for k, v in (("value", self.value), ("se", self.se))}


def _arrays(request: npt.ArrayLike, *xs: npt.ArrayLike) -> tuple[npt.NDArray[np.int64], list[FloatArray]]:
    req = np.asarray(request, dtype=np.int64).reshape(-1)
    out = [np.asarray(x, dtype=np.float64).reshape(-1) for x in xs]
    if any(len(x) != len(req) for x in out):
        raise ValueError(f"every array must have one value per row ({len(req)}), got {[len(x) for x in out]}")
    if len(req) == 0:
        raise ValueError("the log has no rows")
    return req, out


def _cluster_se(request: npt.NDArray[np.int64], terms: FloatArray, value: float, denom: FloatArray) -> float:
    """SE of value = Σ terms / Σ denom, clustered by request: sqrt(Σ_i (S_i − value·D_i)²) / Σ denom."""
    _, group = np.unique(request, return_inverse=True)
    s = np.bincount(group, weights=terms)
    d = np.bincount(group, weights=denom)
    total = float(denom.sum())
    return float(np.sqrt(np.sum((s - value * d) ** 2)) / total) if total > 0 else float("nan")


def _weights(pscore: FloatArray, target: FloatArray) -> FloatArray:
    if np.any(pscore <= 0) or np.any(pscore > 1):
        raise ValueError("pscore must be in (0, 1]")
    if np.any(target < 0) or np.any(target > 1):
        raise ValueError("target probabilities must be in [0, 1]")
    out: FloatArray = target / pscore
    return out


def ipw(request: npt.ArrayLike, reward: npt.ArrayLike, pscore: npt.ArrayLike, target: npt.ArrayLike) -> Estimate:
    req, (r, p, t) = _arrays(request, reward, pscore, target)
    terms = _weights(p, t) * r
    value = float(terms.mean())
    return Estimate(value, _cluster_se(req, terms, value, np.ones_like(terms)))


def snipw(request: npt.ArrayLike, reward: npt.ArrayLike, pscore: npt.ArrayLike, target: npt.ArrayLike) -> Estimate:
    req, (r, p, t) = _arrays(request, reward, pscore, target)
    w = _weights(p, t)
    if w.sum() <= 0:  # the target puts no weight on any logged row: undefined
        return Estimate(float("nan"), float("nan"))
    value = float((w * r).sum() / w.sum())
    return Estimate(value, _cluster_se(req, w * r, value, w))


def dr(request: npt.ArrayLike, reward: npt.ArrayLike, pscore: npt.ArrayLike, target: npt.ArrayLike,
       q_logged: npt.ArrayLike, q_target: npt.ArrayLike) -> Estimate:  # fmt: skip
    """``q_logged`` q̂ of the shown item; ``q_target`` Σ_a w_e(a)·q̂(a) at the same slot (for a deterministic
    target: q̂ of the item it puts there)."""
    req, (r, p, t, q, qe) = _arrays(request, reward, pscore, target, q_logged, q_target)
    terms = qe + _weights(p, t) * (r - q)
    value = float(terms.mean())
    return Estimate(value, _cluster_se(req, terms, value, np.ones_like(terms)))


def estimate_all(request: npt.ArrayLike, reward: npt.ArrayLike, pscore: npt.ArrayLike, target: npt.ArrayLike,
                 q_logged: npt.ArrayLike, q_target: npt.ArrayLike) -> dict[str, Estimate]:  # fmt: skip
    return {"ipw": ipw(request, reward, pscore, target), "snipw": snipw(request, reward, pscore, target),
            "dr": dr(request, reward, pscore, target, q_logged, q_target)}  # fmt: skip
