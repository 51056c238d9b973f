"""Slates of the exploring strategies besides AGE's score rule (``models.age.apply_budget``), and their
Monte-Carlo propensities.

ε-greedy (``egreedy_slate``): the greedy top_n, then each slot, bottom first, is replaced with probability ε by a
uniformly drawn eligible candidate outside the greedy top_n, at most ``budget`` replacements (the same budget and
eligibility as every other exploring strategy; a replacement is an explored item).

Propensities (``position_propensities``): the probability that the policy shows the item it showed at each slot,
estimated from M draws of the policy's own randomness (draw 0 is the served draw itself, so every shown slot has a
propensity of at least 1/M; the other draws are seeded from the request seed, ``draw_seeds``, so the estimate is
replayable from the request id).
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


def greedy_slate(pctr: npt.NDArray[np.floating], top_n: int) -> IntArray:
    """top_n by pCTR, ties by candidate order."""
    out: IntArray = np.lexsort((np.arange(len(pctr)), -pctr))[:top_n].astype(np.int64)
    return out


def egreedy_slate(pctr: npt.NDArray[np.floating], eligible: npt.NDArray[np.bool_], top_n: int, budget: int,
                  epsilon: float, rng: np.random.Generator) -> tuple[IntArray, npt.NDArray[np.bool_]]:  # fmt: skip
    """(order, explored flags per candidate) of one ε-greedy slate."""
    order = greedy_slate(pctr, top_n)
    explored = np.zeros(len(pctr), dtype=bool)
    pool = np.ones(len(pctr), dtype=bool)
    pool[order] = False
    pool &= eligible
    flips = rng.random(len(order)) < epsilon
    done = 0
    for slot in range(len(order) - 1, -1, -1):
        if done >= budget or not pool.any():
            break
        if flips[slot]:
            pick = int(rng.choice(np.flatnonzero(pool)))
            order[slot] = pick
            pool[pick] = False
            explored[pick] = True
            done += 1
    return order, explored


def draw_seeds(request_seed: int, draws: int) -> list[int]:
    """Seeds of the M propensity draws of a request: draw 0 is the served draw (the request seed itself), draw j a
    hash of (request seed, j) — replayable from the request id."""
    out = [request_seed]
    for j in range(1, draws):
        digest = hashlib.blake2b(f"{request_seed}:{j}".encode(), digest_size=8).digest()
        out.append(int.from_bytes(digest, "little") & (2**63 - 1))
    return out


def position_propensities(shown: npt.ArrayLike, draws: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """[top_n] share of the M draws (rows of ``draws`` [M, top_n], row 0 = the served draw) that put the shown
    item at the same slot."""
    s = np.asarray(shown, dtype=np.int64)
    d = np.asarray(draws, dtype=np.int64)
    if d.ndim != 2 or d.shape[1] != len(s) or len(d) < 1:
        raise ValueError(f"draws must be [M >= 1, {len(s)}], got {d.shape}")
    out: npt.NDArray[np.float64] = (d == s[None, :]).mean(0)
    return out
