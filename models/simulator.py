"""The exploration simulator (``longrank simulate``): cumulative clicks of exploration strategies in a cold-start
environment whose click probabilities are known.

What AGE is for (REFERENCE.md): a production ranker keeps receiving new items; a new item's id embedding has never
been trained, so the model has no information about it and a greedy ranker rarely shows it, so it stays unknown
(the paper: new items need ~10 K impressions before their CTR settles, and only items under 3,000 impressions are
explored). The environment reproduces that situation and nothing more; every strategy runs on the same
environment, the same model class, the same warm model and the same update schedule.

Users and truth. ``users`` users from the synthetic generator (``generate_user``: short histories of ``history``
behaviours, 3 long-term and 2 current short-term categories each; the histories, and so the user-side features,
do not change during a run). A user's click probability for item k of category c is the generator's formula
``p = sigmoid(B0 + B_LONG·[c long-term] + B_SHORT·[c short-term] + q_k)``, with an item quality q_k ~ N(0,
``quality_std``) drawn once per item — a new item is as likely as an established one to be much better or worse.

Item stream. Each of the ``categories`` categories has ``live`` item slots. A slot holds one item for ``lifetime``
rounds, then the item retires and a NEW item (fresh id, fresh quality) takes the slot; slots are phase-shifted at
random, so about ``categories·live/lifetime`` items are born every round and the whole catalogue turns over every
``lifetime`` rounds (``rounds`` covers several turnovers, so learning about new items has time to pay off). The
items alive at round 0 are the established ones: the warm model was trained on them.

Cold start, as production has it. Every item has its own never-shared embedding bucket (item ids are chosen so
that their hashed buckets collide neither with each other nor with the users' history items), and the row of
every item born during the run is set to ``new_init`` ("zero", the usual initialisation of a new id, or "mean" of
the established rows): a new item's embedding carries no information, its only known feature is its category.
Buckets never seen in training stay exactly where they were set (Adam does not move a row whose gradient has
always been zero), so a new item starts informationless in every strategy's model until that strategy shows it.

Requests. Each round ``users_per_round`` distinct users each get ``candidates`` distinct live items (retrieval):
drawn without replacement with category weights following the generator's mixture (half long-term, a quarter
short-term, a quarter uniform). Every strategy ranks the same candidate sets and shows its top ``top_n``; clicks
are drawn from the true probabilities with the same uniform numbers for every strategy (common random numbers).

Learning. All strategies start from one warm model (a small sim_hard RankerModel: DIN over the last ``short_len``
behaviours, hard-search ESU over the last ``long_k`` behaviours of the candidate's category) trained on ``warm``
impressions of the established items shown uniformly at random (so every established item is well estimated),
and one warm Dynamic Gating Unit. Every ``update_every`` rounds each strategy's model takes ``update_steps`` Adam
steps on its OWN logged feedback (the latest ``buffer`` impressions; nothing else), and its DGU one epoch on the
same rows.

Strategies: greedy (rank by pCTR), egreedy (each of the top_n slots replaced by a random other candidate with
probability ε = 0.05), dropout_ts (MC-dropout Thompson sampling: eligible items ranked by one dropout prediction,
no gradient), age_ts, age_ucb, age_ts_no_dgu (AGE-TS with every eligible item gated in). The exploring strategies
share serving's rules: only items with fewer than ``max_impressions`` impressions (in that strategy's own log) are
eligible, and at most ``budget`` explored items inside top_n (models.age.apply_budget). ``oracle`` (top_n by the
true probability) is reported beside them as the headroom, not as a strategy.

Tuning (fair to every strategy, never on the reported seeds 0-4): the update schedule (``lr`` 3e-3 over 1e-3) was
chosen for greedy; λ by a sweep over {1, 3, 10} on tuning seeds 100 and 101 for AGE-TS (3; the no-DGU ablation
uses the same λ) and AGE-UCB (1); the MC-dropout rate 0.1 (over 0.05 and 0.3) for dropout_ts on seed 100; ε is
fixed at 0.05. ``max_impressions`` = 30 follows the paper's ratio (explore under 3,000 of the ~10 K impressions
an item needs to settle): here a new item's learnt quality stops improving after ~50-100 impressions.

One torch thread per process, every random stream seeded: a seed gives the same result every time.
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
from models.data.synthetic import B0, B_LONG, B_SHORT, END_TS, SyntheticConfig, generate_user, sigmoid
from models.dgu import train_dgu
from models.features import Batch, action_index, hash_categories, hash_items
from models.layers import TimeBuckets
from models.ranker import RankerModel

STRATEGIES = ("greedy", "egreedy", "dropout_ts", "age_ts", "age_ucb", "age_ts_no_dgu")
NEW_INITS = ("zero", "mean")
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
ITEM_ID_BASE = 10**12  # raw ids of the simulated items: far from every id of the generator's histories


@dataclass(frozen=True)
class SimConfig:
    rounds: int = 200
    users_per_round: int = 32
    candidates: int = 40
    top_n: int = 4
    users: int = 300
    categories: int = 20
    history: int = 200
    live: int = 4  # item slots per category
    lifetime: int = 80  # rounds an item lives; the catalogue turns over every lifetime rounds
    quality_std: float = 0.8  # q ~ N(0, quality_std), established and new items alike
    new_init: str = "zero"  # a new item's embedding row: "zero" or the "mean" of the established rows
    warm: int = 30_000  # uniformly random impressions of the established items (the warm model's data)
    warm_epochs: int = 3  # passes of the warm training (batches of 256, learning rate ``lr``)
    update_every: int = 4
    update_steps: int = 8
    update_batch: int = 512
    buffer: int = 8_000
    lr: float = 3e-3
    epsilon: float = 0.05
    lam: float = 3.0  # AGE-TS λ (and its no-DGU ablation), chosen on tuning seeds 100-101 (see README)
    lam_ucb: float = 1.0  # AGE-UCB λ, tuned the same way (its δ, the spread of N samples, has its own scale)
    dropout: float = 0.1  # MC-dropout rate of the sampled passes
    samples: int = 20
    budget: int = 2
    max_impressions: int = 30

    def __post_init__(self) -> None:
        for name in ("rounds", "users_per_round", "candidates", "top_n", "users", "history", "live", "lifetime", "warm",
                     "warm_epochs", "update_every", "update_steps", "update_batch", "buffer", "samples"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.top_n > self.candidates:
            raise ValueError(f"top_n={self.top_n} must be <= candidates={self.candidates}")
        if self.candidates > self.categories * self.live:
            raise ValueError(f"candidates={self.candidates} must be <= categories·live={self.categories * self.live}")
        if self.new_init not in NEW_INITS:
            raise ValueError(f"new_init={self.new_init!r} must be one of {NEW_INITS}")
        if not 0 <= self.epsilon <= 1:
            raise ValueError(f"epsilon={self.epsilon} must be in [0, 1]")
        if self.quality_std < 0 or self.lam < 0 or self.lam_ucb < 0 or self.max_impressions < 0:
            raise ValueError("quality_std, lam, lam_ucb and max_impressions must be >= 0")


def model_config() -> ModelConfig:
    return ModelConfig.for_variant(
        "sim_hard", item_buckets=2**14, category_buckets=64, item_dim=8, category_dim=4, time_dim=4, short_len=20,
        long_k=8, heads=2, head_dim=8, attention_hidden=(16,), mlp_dims=(64, 32), dropout=0.1,
    )  # fmt: skip


class Catalogue:
    """Every item of a run (index k): raw id, embedding bucket, category, quality, birth and retirement round.
    Slot (c, j) holds generation g during rounds [o + (g−1)·L, o + g·L), o in [1, L] its random phase; g = 0 are
    the established items (alive at round 0, born before it)."""

    def __init__(self, cfg: SimConfig, rng: np.random.Generator, taken: set[int], mcfg: ModelConfig) -> None:
        slots, life = cfg.categories * cfg.live, cfg.lifetime
        phase = rng.integers(1, life + 1, slots)  # generation 0 is alive at round 0 in every slot
        gens = (cfg.rounds - 1 - phase) // life + 2  # generations per slot up to the last round
        slot = np.repeat(np.arange(slots), gens)
        gen = np.concatenate([np.arange(g) for g in gens])
        self.n = len(slot)
        self.category: IntArray = slot // cfg.live
        self.born: IntArray = phase[slot] + (gen - 1) * life
        self.dies: IntArray = self.born + life
        self.established = gen == 0
        self.quality: FloatArray = rng.normal(0.0, cfg.quality_std, self.n)
        self.first = np.cumsum(gens) - gens  # index of a slot's generation 0
        self.phase, self.cfg = phase, cfg
        self.raw_id, self.bucket = _fresh_ids(self.n, taken, mcfg)

    def live(self, r: int) -> IntArray:
        """The catalogue indices alive at round r, one per slot (slot order)."""
        g = (r - self.phase) // self.cfg.lifetime + 1
        out: IntArray = self.first + g
        return out


def _fresh_ids(n: int, taken: set[int], mcfg: ModelConfig) -> tuple[IntArray, IntArray]:
    """n raw item ids whose hashed buckets are distinct and outside ``taken`` (the histories' buckets)."""
    ids: list[int] = []
    buckets: list[int] = []
    used = set(taken)
    start = ITEM_ID_BASE
    while len(ids) < n:
        block = np.arange(start, start + 4 * n, dtype=np.int64)
        for raw, b in zip(block.tolist(), hash_items(block, None, mcfg).tolist(), strict=True):
            if b not in used and len(ids) < n:
                used.add(b)
                ids.append(raw)
                buckets.append(b)
        start += 4 * n
    if len(used) >= mcfg.item_buckets - 1:
        raise ValueError(f"item_buckets={mcfg.item_buckets} too few for {n} items beside the histories")
    return np.asarray(ids, dtype=np.int64), np.asarray(buckets, dtype=np.int64)


class Environment:
    """Users, their precomputed features, the item catalogue, candidate sets and true click probabilities."""

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
        short_b, long_b = hash_items(short[0], sm, mcfg), hash_items(long[0], lm, mcfg)
        self.short = (t(short_b), t(hash_categories(short[1], sm, mcfg)), t(action_index(short[2], sm, mcfg)), t(sm))
        self.long = (t(long_b), t(hash_categories(long[1], lm, mcfg)), t(action_index(long[2], lm, mcfg)),
                     t(long[3]), t(lm))  # fmt: skip
        taken = set(short_b[sm].tolist()) | set(long_b[lm].tolist())
        self.items = Catalogue(cfg, np.random.default_rng([seed, 4]), taken, mcfg)
        self.cat_bucket = hash_categories(np.arange(n_cat), None, mcfg)
        # category weight per user: half long-term, a quarter short-term, a quarter uniform (the generator's mix)
        w = np.full((cfg.users, n_cat), 0.25 / n_cat)
        np.add.at(w, (np.arange(cfg.users)[:, None], self.long_cats), 0.5 / 3)
        np.add.at(w, (np.arange(cfg.users)[:, None], self.short_cats), 0.25 / 2)
        self.log_cat_weight = np.log(w)

    def batch(self, user: IntArray, k: IntArray) -> Batch:
        """Features of rows (user, catalogue index); one user-side row per distinct user."""
        users, user_of = np.unique(user, return_inverse=True)
        cats = self.items.category[k]
        ut, ct, rows_u = torch.from_numpy(users), torch.from_numpy(cats), torch.from_numpy(user)
        return Batch(
            cand_item=torch.from_numpy(self.items.bucket[k]),
            cand_cat=torch.from_numpy(self.cat_bucket[cats]),
            user_of=torch.from_numpy(user_of.astype(np.int64)),
            now=torch.full((len(users),), self.now, dtype=torch.int64),
            short_item=self.short[0][ut], short_cat=self.short[1][ut], short_action=self.short[2][ut],
            short_mask=self.short[3][ut],
            long_item=self.long[0][rows_u, ct], long_cat=self.long[1][rows_u, ct], long_action=self.long[2][rows_u, ct],
            long_dt=self.long[3][rows_u, ct], long_mask=self.long[4][rows_u, ct],
        )  # fmt: skip

    def candidates(self, rng: np.random.Generator, users: IntArray, live: IntArray, n: int) -> IntArray:
        """[U, n] distinct live items per user, drawn without replacement by category weight (Gumbel top-n)."""
        logits = self.log_cat_weight[users][:, self.items.category[live]]  # [U, live]
        keys = logits + rng.gumbel(size=logits.shape)
        top = np.argpartition(-keys, n - 1, axis=1)[:, :n]
        out: IntArray = live[top]
        return out

    def p_true(self, user: IntArray, k: IntArray) -> FloatArray:
        """The ground truth per row (user, catalogue index)."""
        cats = self.items.category[k]
        lc = (cats[:, None] == self.long_cats[user]).any(1)
        sc = (cats[:, None] == self.short_cats[user]).any(1)
        return sigmoid(B0 + B_LONG * lc + B_SHORT * sc + self.items.quality[k])

    def round(self, r: int) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
        """The round's rows (user, catalogue index), their true click probabilities and uniforms for the clicks:
        the same for every strategy."""
        rng = np.random.default_rng([self.seed, 1, r])
        cfg = self.cfg
        users = rng.choice(cfg.users, cfg.users_per_round, replace=False).astype(np.int64)
        items = self.candidates(rng, users, self.items.live(r), cfg.candidates).reshape(-1)
        user = np.repeat(users, cfg.candidates)
        return user, items, self.p_true(user, items), rng.random(len(user))


@dataclass
class Policy:
    name: str
    model: RankerModel
    optimizer: torch.optim.Optimizer
    dgu: DynamicGatingUnit | None
    rng: np.random.Generator
    generator: torch.Generator
    log: list[IntArray]  # rows of (user, catalogue index, label)
    counts: IntArray  # impressions per catalogue index in this policy's own log
    clicks: int = 0


def _fit(model: RankerModel, optimizer: torch.optim.Optimizer, env: Environment, rows: IntArray, steps: int,
         batch: int, rng: np.random.Generator) -> None:  # fmt: skip
    """``steps`` Adam steps of BCE on random mini-batches of logged rows (user, catalogue index, label)."""
    bce = nn.BCEWithLogitsLoss()
    with torch.random.fork_rng():  # training dropout draws from the policy's own stream, not the shared one
        torch.manual_seed(int(rng.integers(2**31)))
        model.train()
        for _ in range(steps):
            pick = rows[rng.integers(0, len(rows), min(batch, len(rows)))]
            logits = model(env.batch(pick[:, 0], pick[:, 1])).logits
            loss = bce(logits, torch.from_numpy(pick[:, 2].astype(np.float32)))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()


def _dgu(model: RankerModel, env: Environment, rows: IntArray, epochs: int, seed: int,
         init: DynamicGatingUnit | None = None) -> DynamicGatingUnit:  # fmt: skip
    k = rows[:, 1]
    return train_dgu(model, env.items.raw_id[k], env.items.category[k], rows[:, 2], epochs=epochs, lr=3e-3,
                     batch_size=256, seed=seed, init=init)  # fmt: skip


def _warm_start(env: Environment, cfg: SimConfig, seed: int) -> tuple[RankerModel, DynamicGatingUnit]:
    """The warm model and DGU: ``warm`` impressions of the established items shown uniformly at random (each a
    request's candidate drawn like the rounds' candidates); then every new item's row set to ``new_init``."""
    rng = np.random.default_rng([seed, 2])
    torch.manual_seed(seed)
    model = RankerModel(env.mcfg)
    users = rng.integers(0, cfg.users, cfg.warm).astype(np.int64)
    live = env.items.live(0)
    items = np.concatenate([env.candidates(rng, users[i : i + 1000], live, 1)[:, 0]
                            for i in range(0, cfg.warm, 1000)])  # fmt: skip
    labels = (rng.random(cfg.warm) < env.p_true(users, items)).astype(np.int64)
    rows = np.stack([users, items, labels], axis=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    _fit(model, optimizer, env, rows, steps=cfg.warm_epochs * cfg.warm // 256, batch=256, rng=rng)
    table = model.embedding.item.weight
    with torch.no_grad():
        new = torch.from_numpy(env.items.bucket[~env.items.established])
        est = torch.from_numpy(env.items.bucket[env.items.established])
        fill = table[est].mean(0) if cfg.new_init == "mean" else torch.zeros(table.shape[1])
        table[new] = fill
    return model, _dgu(model, env, rows, epochs=3, seed=seed)


def _scores(policy: Policy, env: Environment, cfg: SimConfig, user: IntArray, items: IntArray
            ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.bool_]]:  # fmt: skip
    """(pCTR, explored score, moved) of every row for the policy's model."""
    batch = env.batch(user, items)
    name = policy.name
    if name in ("greedy", "egreedy"):
        with torch.inference_mode():
            p = torch.sigmoid(policy.model(batch).logits).numpy()
        return p, p, np.zeros(len(p), dtype=bool)
    ucb = name == "age_ucb"
    params = AGEParams(policy="ucb" if ucb else "ts", lam=cfg.lam_ucb if ucb else cfg.lam, dropout=cfg.dropout,
                       samples=cfg.samples, use_gradient=name != "dropout_ts")  # fmt: skip
    eligible = policy.counts[items] < cfg.max_impressions
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


def _oracle(cfg: SimConfig, p_true: FloatArray, uniform: FloatArray) -> int:
    """Clicks of top_n by the true probability (the headroom; same uniforms)."""
    p = p_true.reshape(-1, cfg.candidates)
    top = np.argsort(-p, axis=1, kind="stable")[:, : cfg.top_n]
    return int((np.take_along_axis(uniform.reshape(p.shape), top, 1) < np.take_along_axis(p, top, 1)).sum())


def run_seed(cfg: SimConfig, seed: int, strategies: tuple[str, ...] = STRATEGIES) -> dict[str, list[int]]:
    """Cumulative clicks per round of each strategy (and of ``oracle``) for one seed."""
    torch.set_num_threads(1)
    env = Environment(cfg, seed, model_config())
    warm, dgu = _warm_start(env, cfg, seed)
    policies = []
    for name in strategies:
        index = STRATEGIES.index(name)  # a strategy's own random streams do not depend on which others run
        model = copy.deepcopy(warm).eval()
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        generator = torch.Generator().manual_seed(seed * 100 + index)
        policies.append(Policy(name, model, optimizer, copy.deepcopy(dgu), np.random.default_rng([seed, 3, index]),
                               generator, [], np.zeros(env.items.n, dtype=np.int64)))  # fmt: skip
    curves: dict[str, list[int]] = {p.name: [] for p in policies}
    curves["oracle"] = []
    oracle = 0
    for r in range(cfg.rounds):
        user, items, p_true, uniform = env.round(r)
        oracle += _oracle(cfg, p_true, uniform)
        curves["oracle"].append(oracle)
        for policy in policies:
            pctr, score, moved = _scores(policy, env, cfg, user, items)
            shown = _show(policy, cfg, pctr, score, moved)
            clicks = (uniform[shown] < p_true[shown]).astype(np.int64)
            policy.clicks += int(clicks.sum())
            curves[policy.name].append(policy.clicks)
            np.add.at(policy.counts, items[shown], 1)
            policy.log.append(np.stack([user[shown], items[shown], clicks], axis=1))
            if (r + 1) % cfg.update_every == 0:
                rows = np.concatenate(policy.log)[-cfg.buffer :]
                policy.log = [rows]
                _fit(policy.model, policy.optimizer, env, rows, cfg.update_steps, cfg.update_batch, policy.rng)
                if policy.dgu is not None:
                    policy.dgu = _dgu(policy.model, env, rows, epochs=1, seed=seed + r, init=policy.dgu)
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
    oracle = np.asarray([run["oracle"][-1] for run in runs], dtype=np.float64)
    summary = {}
    for name, final in finals.items():
        row: dict[str, Any] = {"clicks_mean": round(float(final.mean()), 2), "clicks_std": round(float(final.std()), 2),
                               "clicks": final.astype(int).tolist()}  # fmt: skip
        if greedy is not None:
            row["lift_vs_greedy"] = round(float(final.mean() / greedy.mean() - 1.0), 4)
            row["lift_vs_greedy_per_seed"] = [round(float(v), 4) for v in final / greedy - 1.0]
        summary[name] = row
    return {"strategies": summary, "oracle": {"clicks_mean": round(float(oracle.mean()), 2),
                                              "clicks_std": round(float(oracle.std()), 2)},
            "seeds": seeds, "config": asdict(cfg), "curves": curves,
            "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip


def plot(result: dict[str, Any], path: str) -> None:
    """Cumulative clicks over rounds relative to greedy (when run), mean over seeds with a ±1 std band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = result["curves"]
    base = curves.get("greedy")
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, c in curves.items():
        x = np.arange(1, c.shape[1] + 1)
        y = c / base - 1.0 if base is not None else c
        mean, std = y.mean(0), y.std(0)
        ax.plot(x, 100 * mean if base is not None else mean, label=name)
        ax.fill_between(x, 100 * (mean - std) if base is not None else mean - std,
                        100 * (mean + std) if base is not None else mean + std, alpha=0.15)  # fmt: skip
    ax.set_xlabel("round")
    ax.set_ylabel("cumulative clicks vs greedy (%)" if base is not None else "cumulative clicks")
    ax.set_title(f"exploration simulator ({len(result['seeds'])} seeds, mean ± std)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
