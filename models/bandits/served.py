"""One explored request as served (serving/pipeline.py) and benchmarked (``longrank bench model``): the slate of
an exploration policy with its Monte-Carlo propensities.

AGE (``ts``/``ucb``) and MC-dropout TS (``dropout_ts``, ``policy_params``): ``models.age.prepare`` once (forward,
backward for AGE, gate), then M draws of the policy's dropout
randomness in one ``models.age.sample`` call — draw 0 is the served one, seeded by the request seed, draws 1..M−1
by ``draw_seeds`` — each turned into a slate by ``apply_budget``; the propensity of a shown slot is the share of
draws that put the same item there. Count-based UCB (``count_ucb``): pCTR's logit plus c/√(1 + impressions) for
eligible items, deterministic (every propensity is 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from models.age import AGEParams, DynamicGatingUnit, apply_budget, last_hidden, prepare, sample
from models.bandits.slate import draw_seeds, position_propensities
from models.features import Batch
from models.ranker import RankerModel

SERVED_POLICIES = ("dropout_ts", "ts", "ucb")  # LONGRANK_EXPLORE_POLICY


def policy_params(policy: str, lam: float, dropout: float, samples: int = 20, pgd_steps: int = 1) -> AGEParams:
    """The AGEParams of a served policy: ``ts`` / ``ucb`` are AGE-TS / AGE-UCB (λ, dropout, N, PGD steps);
    ``dropout_ts`` is MC-dropout Thompson sampling (eligible items ranked by one dropout prediction, no gradient
    step, λ unused) — the best exploring strategy measured in the simulator (README)."""
    if policy not in SERVED_POLICIES:
        raise ValueError(f"policy={policy!r} must be one of {SERVED_POLICIES}")
    if policy == "dropout_ts":
        return AGEParams(policy="ts", lam=1.0, dropout=dropout, samples=1, use_gradient=False)
    return AGEParams(policy=policy, lam=lam, dropout=dropout, samples=samples, pgd_steps=pgd_steps)


@dataclass
class ExploredSlate:
    order: npt.NDArray[np.int64]  # shown candidates, best first
    pctr: npt.NDArray[np.float32]  # [C]
    ranking: npt.NDArray[np.float32]  # [C] pCTR, or the explored score where explored
    explored: npt.NDArray[np.bool_]  # [C] put into the slate by exploration
    explored_score: npt.NDArray[np.float32]  # [C] the policy's score where it moved, else pCTR
    propensity: npt.NDArray[np.float64] | None  # [len(order)] or None without draws


def age_slate(model: RankerModel, batch: Batch, params: AGEParams, *, top_n: int, budget: int, seed: int,
              draws: int, dgu: DynamicGatingUnit | None = None,
              eligible: npt.NDArray[np.bool_] | None = None) -> ExploredSlate:  # fmt: skip
    prep = prepare(model, batch, dgu=dgu, eligible=eligible, top_n=top_n, need_grad=params.use_gradient)
    seeds = draw_seeds(seed, max(1, draws))
    gens: list[torch.Generator | None] = [torch.Generator().manual_seed(s) for s in seeds]
    outs = sample(model, prep, params, gens)
    out = outs[0]
    order, ranking, explored = apply_budget(out.pctr, out.score, out.moved, top_n, budget)
    propensity = None
    if draws > 0:
        slates = [order] + [apply_budget(d.pctr, d.score, d.moved, top_n, budget)[0] for d in outs[1:]]
        propensity = position_propensities(order, np.stack(slates))
    return ExploredSlate(order, out.pctr, ranking, explored, out.score, propensity)


def count_ucb_slate(model: RankerModel, batch: Batch, c: float, counts: npt.ArrayLike, *, top_n: int, budget: int,
                    eligible: npt.NDArray[np.bool_] | None = None) -> ExploredSlate:  # fmt: skip
    logit_t, _ = last_hidden(model, batch)
    logit = logit_t.numpy().astype(np.float64)
    n = np.asarray(counts, dtype=np.float64)
    ok = np.ones(len(logit), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    pctr = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    moved = ok & (c > 0)
    score = np.where(moved, 1.0 / (1.0 + np.exp(-(logit + c / np.sqrt(1.0 + n)))), pctr).astype(np.float32)
    order, ranking, explored = apply_budget(pctr, score, moved, top_n, budget)
    return ExploredSlate(order, pctr, ranking, explored, score, np.ones(len(order)))
