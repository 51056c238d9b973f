"""The exploration simulator (``longrank simulate``): cumulative clicks of exploration strategies in an environment
whose click probabilities are known.

Environment (the synthetic generator's ground truth, models/data/synthetic.py): ``users`` users from
``generate_user`` (short histories of ``history`` behaviours; each user has long-term and current short-term
categories), and ``p_true = sigmoid(B0 + B_LONG·[long] + B_SHORT·[short] + quality(item))``. Items follow the
generator's id rule ``((epoch·C) + category)·POOL + k`` with k < ``pool``; a new item epoch starts every
``new_every`` rounds, so new, never-seen items keep arriving (a candidate comes from the current epoch with
probability ``p_new``, else from the two before). Candidate categories follow the generator's mixture (half
long-term, a quarter short-term, a quarter uniform).

Each round: ``users_per_round`` requests of ``candidates`` candidates; every strategy ranks the same candidate
sets (common random numbers), shows its top ``top_n``, and clicks are drawn from the true probabilities with the
same uniform numbers for every strategy. Every ``update_every`` rounds each strategy's model takes
``update_steps`` Adam steps on its OWN logged feedback (the latest ``buffer`` shown items), and its DGU one epoch.
All strategies start from the same warm model trained on ``warm`` uniformly random impressions of epoch 0.

Strategies: greedy (pCTR), egreedy (each slot replaced by a random candidate with probability ε = 0.05),
dropout_ts (MC-dropout Thompson sampling: the dropout prediction itself, no gradient), age_ts, age_ucb,
age_ts_no_dgu (AGE-TS with every eligible item gated in). The exploring strategies share serving's rules: only
items under ``max_impressions`` are eligible, and at most ``budget`` explored items inside top_n
(models.age.apply_budget).

The model is a small sim_hard RankerModel (DIN over the last ``short_len`` behaviours, hard-search ESU over the
last ``long_k`` behaviours of the candidate's category); features are precomputed per user (histories do not
change during a run), so a round is a few vectorised indexing operations. One torch thread, seeded: a seed gives
the same result every time.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from models.age import AGEParams, DynamicGatingUnit, apply_budget, explore
from models.config import ModelConfig
from models.data.synthetic import (
    B0,
    B_LONG,
    B_SHORT,
    END_TS,
    EPOCH0_TS,
    EPOCH_S,
    POOL,
    SyntheticConfig,
    generate_user,
    item_quality,
    sigmoid,
)
from models.dgu import train_dgu
from models.features import Batch, action_index, hash_categories, hash_items
from models.layers import TimeBuckets
from models.ranker import RankerModel

STRATEGIES = ("greedy", "egreedy", "dropout_ts", "age_ts", "age_ucb", "age_ts_no_dgu")
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SimConfig:
    rounds: int = 120
    users_per_round: int = 32
    candidates: int = 40
    top_n: int = 4
    users: int = 300
    categories: int = 20
    history: int = 200
    new_every: int = 30  # rounds per item epoch
    pool: int = 8  # items per (category, epoch): few enough that an item's quality can be learnt from feedback
    p_new: float = 0.7
    warm: int = 20_000  # random impressions of the warm-start data
    update_every: int = 4
    update_steps: int = 8
    update_batch: int = 512
    buffer: int = 8_000
    lr: float = 3e-3
    epsilon: float = 0.05
    lam: float = 40.0  # AGE λ at this model's scale (chosen on a separate seed, 100: see the report)
    dropout: float = 0.1  # AGE MC-dropout rate
    samples: int = 20
    budget: int = 2
    max_impressions: int = 3000

    def __post_init__(self) -> None:
        for name in ("rounds", "users_per_round", "candidates", "top_n", "users", "history", "new_every", "warm",
                     "update_every", "update_steps", "update_batch", "buffer", "samples"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.top_n > self.candidates:
            raise ValueError(f"top_n={self.top_n} must be <= candidates={self.candidates}")
        if not 1 <= self.pool <= POOL:
            raise ValueError(f"pool={self.pool} must be in [1, {POOL}]")
        if not 0 <= self.epsilon <= 1 or not 0 <= self.p_new <= 1:
            raise ValueError("epsilon and p_new must be in [0, 1]")


def model_config() -> ModelConfig:
    return ModelConfig.for_variant(
        "sim_hard", item_buckets=2**14, category_buckets=64, item_dim=8, category_dim=4, time_dim=4, short_len=20,
        long_k=8, heads=2, head_dim=8, attention_hidden=(16,), mlp_dims=(64, 32), dropout=0.1,
    )  # fmt: skip


class Environment:
    """Users, their precomputed features, candidate sets and true click probabilities for one seed."""

    def __init__(self, cfg: SimConfig, seed: int, mcfg: ModelConfig) -> None:
        self.cfg, self.seed, self.mcfg = cfg, seed, mcfg
        syn = SyntheticConfig(users=cfg.users, length=cfg.history, categories=cfg.categories, samples_per_user=3,
                              seed=seed)  # fmt: skip
        s, k, n_cat = mcfg.short_len, mcfg.long_k, cfg.categories
        self.long_cats = np.zeros((cfg.users, 3), dtype=np.int64)
        self.short_cats = np.zeros((cfg.users, 2), dtype=np.int64)
        short = np.zeros((4, cfg.users, s), dtype=np.int64)  # item, cat, action, mask
        long = np.zeros((5, cfg.users, n_cat, k), dtype=np.int64)  # item, cat, action, dt bucket, mask
        self.now = END_TS + 86_400
        for u in range(cfg.users):
            d = generate_user(syn, u)
            self.long_cats[u], self.short_cats[u] = d.long_cats, d.short_cats
            b = d.behaviors
            tail = slice(max(0, len(b["ts"]) - s), None)
            n = len(b["ts"][tail])
            short[0, u, :n], short[1, u, :n] = b["item_id"][tail], b["category_id"][tail]
            short[2, u, :n], short[3, u, :n] = b["action"][tail], 1
            for c in range(n_cat):
                idx = np.flatnonzero(b["category_id"] == c)[-k:]
                m = len(idx)
                long[0, u, c, :m], long[1, u, c, :m] = b["item_id"][idx], c
                long[2, u, c, :m] = b["action"][idx]
                long[3, u, c, :m] = TimeBuckets.bucketize(self.now - b["ts"][idx], mcfg.time_buckets)
                long[4, u, c, :m] = 1
        sm, lm = short[3].astype(bool), long[4].astype(bool)
        t = torch.from_numpy
        self.short = (t(hash_items(short[0], sm, mcfg)), t(hash_categories(short[1], sm, mcfg)),
                      t(action_index(short[2], sm, mcfg)), t(sm))  # fmt: skip
        self.long = (t(hash_items(long[0], lm, mcfg)), t(hash_categories(long[1], lm, mcfg)),
                     t(action_index(long[2], lm, mcfg)), t(long[3]), t(lm))  # fmt: skip
        self.base_epoch = (END_TS - EPOCH0_TS) // EPOCH_S + 1  # the first epoch after every history

    def batch(self, user: IntArray, items: IntArray, cats: IntArray) -> Batch:
        """Features of rows (user, item, category); one user-side row per distinct user."""
        users, user_of = np.unique(user, return_inverse=True)
        ut, ct = torch.from_numpy(users), torch.from_numpy(cats)
        rows_u = torch.from_numpy(user)
        return Batch(
            cand_item=torch.from_numpy(hash_items(items, None, self.mcfg)),
            cand_cat=torch.from_numpy(hash_categories(cats, None, self.mcfg)),
            user_of=torch.from_numpy(user_of.astype(np.int64)),
            now=torch.full((len(users),), self.now, dtype=torch.int64),
            short_item=self.short[0][ut], short_cat=self.short[1][ut], short_action=self.short[2][ut],
            short_mask=self.short[3][ut],
            long_item=self.long[0][rows_u, ct], long_cat=self.long[1][rows_u, ct], long_action=self.long[2][rows_u, ct],
            long_dt=self.long[3][rows_u, ct], long_mask=self.long[4][rows_u, ct],
        )  # fmt: skip

    def items(self, rng: np.random.Generator, cats: IntArray, epoch: int) -> IntArray:
        back = np.where(rng.random(len(cats)) < self.cfg.p_new, 0, rng.integers(1, 3, len(cats)))
        e = np.maximum(self.base_epoch + epoch - back, 0)
        out: IntArray = (e * self.cfg.categories + cats) * POOL + rng.integers(0, self.cfg.pool, len(cats))
        return out

    def categories(self, rng: np.random.Generator, users: IntArray, n: int) -> IntArray:
        choice = rng.random((len(users), n))
        long = self.long_cats[users[:, None], rng.integers(0, 3, (len(users), n))]
        short = self.short_cats[users[:, None], rng.integers(0, 2, (len(users), n))]
        uniform = rng.integers(0, self.cfg.categories, (len(users), n))
        out: IntArray = np.where(choice < 0.5, long, np.where(choice < 0.75, short, uniform))
        return out

    def p_true(self, user: IntArray, items: IntArray, cats: IntArray) -> npt.NDArray[np.float64]:
        """The generator's ground truth (synthetic.ground_truth) per row, each with its own user's categories."""
        lc = (cats[:, None] == self.long_cats[user]).any(1)
        sc = (cats[:, None] == self.short_cats[user]).any(1)
        return sigmoid(B0 + B_LONG * lc + B_SHORT * sc + item_quality(items, self.seed))

    def round(self, r: int) -> tuple[IntArray, IntArray, IntArray, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """The round's rows (user, item, category), their true click probabilities and uniforms for the clicks:
        the same for every strategy."""
        rng = np.random.default_rng([self.seed, 1, r])
        cfg = self.cfg
        users = rng.choice(cfg.users, cfg.users_per_round, replace=False).astype(np.int64)
        cats = self.categories(rng, users, cfg.candidates)
        items = self.items(rng, cats.reshape(-1), 1 + r // cfg.new_every).reshape(cats.shape)
        user = np.repeat(users, cfg.candidates)
        flat_items, flat_cats = items.reshape(-1), cats.reshape(-1)
        return user, flat_items, flat_cats, self.p_true(user, flat_items, flat_cats), rng.random(len(user))


@dataclass
class Policy:
    name: str
    model: RankerModel
    optimizer: torch.optim.Optimizer
    dgu: DynamicGatingUnit | None
    rng: np.random.Generator
    generator: torch.Generator
    log: list[IntArray]  # rows of (user, item, cat, label)
    clicks: int = 0


def _fit(model: RankerModel, optimizer: torch.optim.Optimizer, env: Environment, rows: IntArray, steps: int,
         batch: int, rng: np.random.Generator) -> None:  # fmt: skip
    """``steps`` Adam steps of BCE on random mini-batches of logged rows (user, item, cat, label)."""
    bce = nn.BCEWithLogitsLoss()
    with torch.random.fork_rng():  # training dropout draws from the policy's own stream, not the shared one
        torch.manual_seed(int(rng.integers(2**31)))
        _steps(model, optimizer, env, rows, steps, batch, rng, bce)


def _steps(model: RankerModel, optimizer: torch.optim.Optimizer, env: Environment, rows: IntArray, steps: int,
           batch: int, rng: np.random.Generator, bce: nn.Module) -> None:  # fmt: skip
    model.train()
    for _ in range(steps):
        pick = rows[rng.integers(0, len(rows), min(batch, len(rows)))]
        logits = model(env.batch(pick[:, 0], pick[:, 1], pick[:, 2])).logits
        loss = bce(logits, torch.from_numpy(pick[:, 3].astype(np.float32)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()


def _warm_start(env: Environment, cfg: SimConfig, seed: int) -> tuple[RankerModel, DynamicGatingUnit]:
    rng = np.random.default_rng([seed, 2])
    torch.manual_seed(seed)
    model = RankerModel(env.mcfg)
    users = rng.integers(0, cfg.users, cfg.warm).astype(np.int64)
    cats = env.categories(rng, users, 1).reshape(-1)
    items = env.items(rng, cats, 0)
    labels = (rng.random(cfg.warm) < env.p_true(users, items, cats)).astype(np.int64)
    rows = np.stack([users, items, cats, labels], axis=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    _fit(model, optimizer, env, rows, steps=2 * cfg.warm // 256, batch=256, rng=rng)
    dgu = train_dgu(model, items, cats, labels, epochs=3, lr=3e-3, batch_size=256, seed=seed)
    return model, dgu


def _scores(policy: Policy, env: Environment, cfg: SimConfig, user: IntArray, items: IntArray, cats: IntArray,
            counts: dict[int, int]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """(pCTR, explored score, moved) of every row for the policy's model."""
    batch = env.batch(user, items, cats)
    name = policy.name
    if name in ("greedy", "egreedy"):
        with torch.inference_mode():
            p = torch.sigmoid(policy.model(batch).logits).numpy()
        return p, p, np.zeros(len(p), dtype=bool)
    params = AGEParams(policy="ucb" if name == "age_ucb" else "ts", lam=cfg.lam, dropout=cfg.dropout,
                       samples=cfg.samples, use_gradient=name != "dropout_ts")  # fmt: skip
    eligible = np.fromiter((counts.get(i, 0) < cfg.max_impressions for i in items.tolist()), dtype=bool,
                           count=len(items))  # fmt: skip
    dgu = policy.dgu if name in ("age_ts", "age_ucb") else None
    out = explore(policy.model, batch, params, dgu=dgu, eligible=eligible, generator=policy.generator)
    return out.pctr, out.score, out.moved


def _show(policy: Policy, cfg: SimConfig, pctr: npt.NDArray[np.float32], score: npt.NDArray[np.float32],
          moved: npt.NDArray[np.bool_]) -> IntArray:  # fmt: skip
    """Indices (into the round's rows) shown by the policy: top_n per request."""
    c, shown = cfg.candidates, []
    for q in range(len(pctr) // c):
        sl = slice(q * c, (q + 1) * c)
        if policy.name == "egreedy":
            order = list(np.lexsort((np.arange(c), -pctr[sl]))[: cfg.top_n])
            for slot in range(cfg.top_n):
                if policy.rng.random() < cfg.epsilon:
                    rest = [i for i in range(c) if i not in order]
                    order[slot] = int(policy.rng.choice(rest))
            idx = np.asarray(order, dtype=np.int64)
        else:
            idx, _, _ = apply_budget(pctr[sl], score[sl], moved[sl], cfg.top_n, cfg.budget)
        shown.append(q * c + idx)
    return np.concatenate(shown)


def run_seed(cfg: SimConfig, seed: int, strategies: tuple[str, ...] = STRATEGIES) -> dict[str, list[int]]:
    """Cumulative clicks per round of each strategy for one seed."""
    torch.set_num_threads(1)
    mcfg = model_config()
    env = Environment(cfg, seed, mcfg)
    warm, dgu = _warm_start(env, cfg, seed)
    policies = []
    for name in strategies:
        index = STRATEGIES.index(name)  # a strategy's own random streams do not depend on which others run
        model = copy.deepcopy(warm).eval()
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        generator = torch.Generator().manual_seed(seed * 100 + index)
        policies.append(Policy(name, model, optimizer, copy.deepcopy(dgu), np.random.default_rng([seed, 3, index]),
                               generator, []))  # fmt: skip
    counts: dict[str, dict[int, int]] = {p.name: {} for p in policies}
    curves: dict[str, list[int]] = {p.name: [] for p in policies}
    for r in range(cfg.rounds):
        user, items, cats, p_true, uniform = env.round(r)
        for policy in policies:
            pctr, score, moved = _scores(policy, env, cfg, user, items, cats, counts[policy.name])
            shown = _show(policy, cfg, pctr, score, moved)
            clicks = (uniform[shown] < p_true[shown]).astype(np.int64)
            policy.clicks += int(clicks.sum())
            curves[policy.name].append(policy.clicks)
            seen = counts[policy.name]
            for item in items[shown].tolist():
                seen[item] = seen.get(item, 0) + 1
            policy.log.append(np.stack([user[shown], items[shown], cats[shown], clicks], axis=1))
            if (r + 1) % cfg.update_every == 0:
                rows = np.concatenate(policy.log)[-cfg.buffer :]
                policy.log = [rows]
                _fit(policy.model, policy.optimizer, env, rows, cfg.update_steps, cfg.update_batch, policy.rng)
                if policy.dgu is not None:
                    policy.dgu = train_dgu(policy.model, rows[:, 1], rows[:, 2], rows[:, 3], epochs=1, lr=3e-3,
                                           batch_size=256, seed=seed + r, init=policy.dgu)  # fmt: skip
    return curves


def _seed_job(job: tuple[dict[str, Any], int, tuple[str, ...]]) -> dict[str, list[int]]:
    cfg, seed, strategies = job
    return run_seed(SimConfig(**cfg), seed, strategies)


def simulate(cfg: SimConfig, seeds: list[int], strategies: tuple[str, ...] = STRATEGIES, workers: int = 1,
             progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """Run every seed (in ``workers`` spawned processes when > 1) and summarise the cumulative clicks."""
    from tqdm import tqdm

    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; known: {list(STRATEGIES)}")
    started = time.perf_counter()
    jobs = [(asdict(cfg), s, strategies) for s in seeds]
    if workers > 1 and len(seeds) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            runs = list(tqdm(pool.map(_seed_job, jobs), total=len(jobs), desc="simulate", unit="seed",
                             disable=not progress))  # fmt: skip
    else:
        runs = [_seed_job(j) for j in tqdm(jobs, desc="simulate", unit="seed", disable=not progress)]
    curves = {name: np.asarray([run[name] for run in runs], dtype=np.float64) for name in strategies}
    finals = {name: c[:, -1] for name, c in curves.items()}
    greedy = finals.get("greedy")
    summary = {}
    for name, final in finals.items():
        row: dict[str, Any] = {"clicks_mean": round(float(final.mean()), 2), "clicks_std": round(float(final.std()), 2),
                               "clicks": final.astype(int).tolist()}  # fmt: skip
        if greedy is not None:
            row["lift_vs_greedy"] = round(float(final.mean() / greedy.mean() - 1.0), 4)
        summary[name] = row
    return {"strategies": summary, "seeds": seeds, "config": asdict(cfg), "curves": curves,
            "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip


def plot(result: dict[str, Any], path: str) -> None:
    """Cumulative clicks over rounds: mean over seeds with a ±1 std band per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, c in result["curves"].items():
        x = np.arange(1, c.shape[1] + 1)
        mean, std = c.mean(0), c.std(0)
        ax.plot(x, mean, label=name)
        ax.fill_between(x, mean - std, mean + std, alpha=0.15)
    ax.set_xlabel("round")
    ax.set_ylabel("cumulative clicks")
    ax.set_title(f"exploration simulator ({len(result['seeds'])} seeds, mean ± std)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
