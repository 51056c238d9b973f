"""The off-policy check on the simulator (``longrank simulate --ope-check``): log an exploring strategy with
Monte-Carlo propensities, estimate greedy's click rate per shown slot from that log with IPW, SNIPW and DR
(models/bandits/ope.py), and compare with greedy's TRUE click rate on the same requests.

Each round, the logging strategy (an AGE policy or dropout_ts) ranks the round's requests as in ``run_variants``;
its dropout randomness is drawn M times more (generators seeded by (seed, round, draw)) on the same prepared
forward (``models.age.prepare``/``sample``), each draw turned into slates by ``apply_budget``; the propensity of a
shown slot is the share of the M draws (the served one included) that put the same item there. The target is the
greedy slate of the logging model at that moment (top_n by its pCTR); its true click rate is the mean of the true
click probabilities of the greedy items over every (request, slot) — known in the simulator, never in the log.
The reward model of DR is the logging model's pCTR. The logging strategy keeps learning from its own clicks.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from models.age import apply_budget, prepare, sample
from models.bandits.ope import estimate_all
from models.bandits.slate import greedy_slate, position_propensities
from models.sim_env import Environment
from models.simulator import SimConfig, _dgu, _fit, _policy, _warm_start, age_params, model_config


def _draw_seed(seed: int, r: int, j: int) -> int:
    digest = hashlib.blake2b(f"sim:{seed}:{r}:{j}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def ope_check(cfg: SimConfig, seed: int, strategy: str = "age_ts", draws: int = 16,
              rounds: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Log ``strategy`` on ``seed`` for ``rounds`` rounds with M = ``draws`` propensity draws; return the three
    estimates of greedy's click rate per slot, greedy's true rate, and whether each lies within 2 SE of it."""
    if not (strategy.startswith("age_") or strategy == "dropout_ts"):
        raise ValueError(f"strategy={strategy!r}: the check logs a randomised AGE policy or dropout_ts")
    if draws < 2:
        raise ValueError(f"draws={draws} must be >= 2")
    cfg = replace(cfg, rounds=rounds or cfg.rounds)
    torch.set_num_threads(1)
    env = Environment(cfg, seed, model_config())
    warm, dgu = _warm_start(env, cfg, seed)
    policy = _policy(strategy, warm, dgu, env, cfg, seed)
    params = age_params(strategy, cfg)
    c, n = cfg.candidates, cfg.top_n
    cols: dict[str, list[Any]] = {k: [] for k in ("request", "reward", "pscore", "target", "q", "q_target", "truth")}
    for r in range(cfg.rounds):
        user, items, p_true, uniform = env.round(r)
        eligible = policy.counts[items] < cfg.max_impressions
        gated = policy.dgu if strategy in ("age_ts", "age_ucb") else None
        prep = prepare(policy.model, env.batch(user, items), dgu=gated, eligible=eligible)
        gens: list[torch.Generator | None] = [policy.generator]
        gens += [torch.Generator().manual_seed(_draw_seed(seed, r, j)) for j in range(1, draws)]
        outs = sample(policy.model, prep, params, gens)
        shown = []
        for q in range(len(user) // c):
            sl = slice(q * c, (q + 1) * c)
            slates = [apply_budget(o.pctr[sl], o.score[sl], o.moved[sl], n, cfg.budget)[0] for o in outs]
            order = slates[0]
            greedy = greedy_slate(outs[0].pctr[sl], n)
            rows = q * c + order
            cols["request"] += [r * 10_000 + q] * len(order)
            cols["reward"] += (uniform[rows] < p_true[rows]).astype(int).tolist()
            cols["pscore"] += position_propensities(order, np.stack(slates)).tolist()
            cols["target"] += (order == greedy[: len(order)]).astype(float).tolist()
            cols["q"] += outs[0].pctr[rows].tolist()
            cols["q_target"] += outs[0].pctr[q * c + greedy].tolist()
            cols["truth"] += p_true[q * c + greedy].tolist()
            shown.append(rows)
        idx = np.concatenate(shown)
        clicks = (uniform[idx] < p_true[idx]).astype(np.int64)
        np.add.at(policy.counts, items[idx], 1)
        policy.log.append(np.stack([user[idx], items[idx], clicks], axis=1))
        if (r + 1) % cfg.update_every == 0:
            log = np.concatenate(policy.log)[-cfg.buffer :]
            policy.log = [log]
            _fit(policy.model, policy.optimizer, env, log, cfg.update_steps, cfg.update_batch, policy.rng)
            if policy.dgu is not None:
                policy.dgu = _dgu(policy.model, env, log, epochs=1, seed=seed + r, init=policy.dgu)
    a = {k: np.asarray(v) for k, v in cols.items()}
    est = estimate_all(a["request"], a["reward"], a["pscore"], a["target"], a["q"], a["q_target"])
    truth = float(a["truth"].mean())
    return {
        "strategy": strategy, "seed": seed, "rounds": cfg.rounds, "draws": draws, "rows": len(a["reward"]),
        "logged_click_rate": round(float(a["reward"].mean()), 6), "greedy_true_click_rate": round(truth, 6),
        "share_of_rows_matching_greedy": round(float(a["target"].mean()), 4),
        "min_pscore": round(float(a["pscore"].min()), 4),
        "estimates": {k: {**e.to_dict(), "within_2se": abs(e.value - truth) <= 2 * e.se} for k, e in est.items()},
    }  # fmt: skip
