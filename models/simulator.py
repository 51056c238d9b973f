"""The exploration simulator (``longrank simulate``): cumulative clicks of exploration strategies in a cold-start
feed whose click probabilities are known, the oracle's headroom over greedy and each strategy's share of it.

What AGE is for (REFERENCE.md): a production ranker keeps receiving new items; a new item's id embedding has never
been trained, so the model knows nothing about it but its category, and only showing it teaches the model its
quality (the paper: new items need ~10 K impressions before their CTR settles; only items under 3,000 are
explored). The environment (models/sim_env.py) reproduces that and nothing more; every strategy runs on the same
environment, the same model class, the same warm model and the same update schedule.

Users and truth. ``users`` users from the synthetic generator (``generate_user``: histories of ``history``
behaviours, 3 long-term and 2 current short-term categories each; the histories, and so the user-side features, do
not change during a run). A user's click probability for item k of category c is
``p = sigmoid(B0 + base_logit + B_LONG·[c long-term] + B_SHORT·[c short-term] + q_k)``: the generator's formula
shifted by ``base_logit`` (−2.5) to a feed's click rates (about 1% off-interest to 40% for the best items on the
user's interests; without it most shown items sit near 0.9, where quality barely changes a click), with an item
quality q_k ~ N(0, ``quality_std``) drawn once per item — a new item is as likely as an established one to be
much better or worse.

Item stream. Each of the ``categories`` categories has ``live`` item slots. A slot holds one item for ``lifetime``
rounds, then the item retires and a NEW item (fresh id, fresh quality) takes the slot; slots are phase-shifted at
random, so new items arrive continuously (about ``categories·live/lifetime`` per round) and the catalogue turns
over every ``lifetime`` rounds; ``rounds`` covers two turnovers, so an item found early pays back for most of its
life. The items alive at round 0 are the established ones: the warm model was trained on them.

Cold start, as production has it. Every item has its own never-shared embedding bucket (item ids are chosen so
that their hashed buckets collide neither with each other nor with the users' history items), and the row of every
item born during the run is set to ``new_init`` ("zero", the usual initialisation of a new id, or "mean" of the
established rows): its only known feature is its category. A row never seen in training stays exactly where it was
set, so a new item starts informationless in every strategy's model until that strategy shows it.

Requests. Each round ``users_per_round`` distinct users each get ``candidates`` distinct live items (retrieval):
drawn without replacement with category weights following the generator's mixture (half long-term, a quarter
short-term, a quarter uniform). Every strategy ranks the same candidate sets and shows its top ``top_n``; clicks are
drawn from the true probabilities with the same uniform numbers for every strategy (common random numbers).

Learning. All strategies start from one warm model (a small sim_hard RankerModel with an explicit ModelConfig:
DIN over the last 20 behaviours, hard-search ESU over the last 8 behaviours of the candidate's category) trained
on ``warm`` impressions of the established items shown uniformly at random, and one warm Dynamic Gating Unit.
Every ``update_every`` rounds each strategy's model takes ``update_steps`` Adam steps on its OWN logged feedback
(the latest ``buffer`` impressions; nothing else), and AGE's DGU one epoch on the same rows.

Strategies (every exploring one under the same rules: only items with fewer than ``max_impressions`` impressions in
that strategy's own log are eligible, at most ``budget`` explored items in the top_n, and an item counts as explored
only when exploration put it into the slate — ``models.age.apply_budget``):

- greedy: top_n by pCTR.
- egreedy: each slot, bottom first, replaced with probability ε by a random eligible outsider.
- dropout_ts: MC-dropout Thompson sampling: eligible items ranked by one dropout prediction (rate ``ts_dropout``).
- count_ucb: a count-based bonus for new items, logit + c/√(1 + impressions).
- linucb_item / linucb_shared: neural-linear LinUCB on the OverArch's last hidden layer φ
  (models/bandits/linear.py; one posterior per item, or one shared): logit + α·√(φᵀA⁻¹φ).
- lints_item / lints_shared: neural-linear Thompson sampling: logit + ν·√(φᵀA⁻¹φ)·ξ.
- age_ts (with the DGU), age_ucb (with the DGU), age_ts_no_dgu (the ablation: every eligible item gated in, at
  age_ts's λ): AGE's ŷ_e = f(h + σ·λ·δ_y·ĝ) with MC dropout ``dropout`` and N = ``samples``.
- oracle (top_n by the true probability) is reported beside them as the headroom, not as a strategy.

A strategy's share of the headroom is (its clicks − greedy's) ÷ (oracle's − greedy's), per seed.

Tuning (the same effort for every exploring strategy, never on the reported seeds): one knob each (``KNOBS``: ε,
the dropout rate, c, α, ν, λ), the same number of grid values, tuning seeds 100-101 (``longrank simulate --tune
--first-seed 100 --seeds 2``); the defaults below are the winners (README). The environment, the update schedule,
``budget`` and ``max_impressions`` are shared and were fixed before the tuning.

One torch thread per process, every random stream seeded: a seed gives the same result every time, and a
strategy's result does not depend on which other strategies run beside it.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from models.age import AGEParams, DynamicGatingUnit, apply_budget, explore, last_hidden
from models.bandits.linear import LinearPosterior
from models.bandits.slate import egreedy_slate
from models.config import ModelConfig
from models.dgu import train_dgu
from models.ranker import RankerModel
from models.sim_env import Environment

STRATEGIES = ("greedy", "egreedy", "dropout_ts", "count_ucb", "linucb_item", "linucb_shared", "lints_item",
              "lints_shared", "age_ucb", "age_ts", "age_ts_no_dgu")  # fmt: skip
# the one knob each exploring strategy is tuned on (a SimConfig field) and its grid; the ablation age_ts_no_dgu
# runs at age_ts's λ
KNOBS: dict[str, tuple[str, tuple[float, ...]]] = {
    "egreedy": ("epsilon", (0.03, 0.1, 0.3)),
    "dropout_ts": ("ts_dropout", (0.05, 0.15, 0.4)),
    "count_ucb": ("count_c", (0.1, 0.3, 1.0)),
    "linucb_item": ("alpha_item", (0.03, 0.1, 0.3)),
    "linucb_shared": ("alpha_shared", (0.1, 0.3, 1.0)),
    "lints_item": ("nu_item", (0.1, 0.3, 1.0)),
    "lints_shared": ("nu_shared", (0.3, 1.0, 3.0)),
    "age_ucb": ("lam_ucb", (0.3, 1.0, 3.0)),
    "age_ts": ("lam", (1.0, 3.0, 10.0)),
}
NEW_INITS = ("zero", "mean")
MOVED = "@slates_changed"  # run_variants' extra key per variant: [requests whose slate exploration changed]
GROUP = 3  # strategies per simulate job (each job builds its seed's environment and warm model once)
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SimConfig:
    rounds: int = 320
    users_per_round: int = 32
    candidates: int = 40
    top_n: int = 4
    users: int = 300
    categories: int = 20
    history: int = 200
    live: int = 6  # item slots per category
    lifetime: int = 160  # rounds an item lives; the catalogue turns over every lifetime rounds
    base_logit: float = -2.5  # added to the generator's logit: click rates of a feed (~1-40%), not ~50-90%
    quality_std: float = 1.0  # q ~ N(0, quality_std), established and new items alike
    new_init: str = "zero"  # a new item's embedding row: "zero" or the "mean" of the established rows
    warm: int = 30_000  # uniformly random impressions of the established items (the warm model's data)
    warm_epochs: int = 3  # passes of the warm training (batches of 256, learning rate ``lr``)
    update_every: int = 4
    update_steps: int = 8
    update_batch: int = 512
    buffer: int = 8_000
    lr: float = 3e-3
    item_lr: float = 0.0  # > 0: the item-id table is trained by plain SGD at this rate (Adam's per-row step is
    # sign-like on rarely seen rows: a click and a non-click move a new item's row by the same amount)
    budget: int = 2  # explored items allowed inside top_n (every exploring strategy)
    max_impressions: int = 50  # only items with fewer impressions (in the strategy's own log) are explored
    # the tuned knobs (KNOBS): the best of each grid on tuning seeds 100-101 (`longrank simulate --tune
    # --first-seed 100 --seeds 2`, 1,865 s); never chosen on the reported seeds
    epsilon: float = 0.03
    ts_dropout: float = 0.15  # MC-dropout rate of dropout_ts
    count_c: float = 0.3  # count_ucb: logit + c / sqrt(1 + n)
    alpha_item: float = 0.03  # LinUCB per item: logit + α·sqrt(φᵀA⁻¹φ)
    alpha_shared: float = 0.1
    nu_item: float = 0.1  # linear TS per item: logit + ν·sqrt(φᵀA⁻¹φ)·ξ
    nu_shared: float = 3.0
    lam: float = 1.0  # AGE-TS λ (and its no-DGU ablation)
    lam_ucb: float = 0.3  # AGE-UCB λ
    dropout: float = 0.1  # AGE's MC-dropout rate (fixed, not tuned)
    samples: int = 20  # AGE-UCB's N
    linear_reg: float = 1.0  # the linear bandits' prior precision

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
        for name in ("ts_dropout", "dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be in [0, 1)")
        for name in ("quality_std", "lam", "lam_ucb", "max_impressions", "budget", "count_c", "alpha_item",
                     "alpha_shared", "nu_item", "nu_shared"):  # fmt: skip
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if not self.linear_reg > 0:
            raise ValueError(f"linear_reg={self.linear_reg} must be > 0")


def model_config() -> ModelConfig:
    """The simulator's model, every field explicit so that new ModelConfig defaults do not change it silently."""
    return ModelConfig(
        variant="sim_hard", short_arch="din", gsu="hard", coaction=False, full_attention=False, stats=False,
        vocabulary=False, item_buckets=2**14,
        category_buckets=64, action_buckets=8, item_dim=8, category_dim=4, use_action=True, time_buckets=32,
        time_dim=4, short_len=20, attention_hidden=(16,), attention_norm="softmax", long_k=8, heads=2, head_dim=8,
        mlp_dims=(64, 32), dropout=0.1,
    )  # fmt: skip


@dataclass
class Policy:
    name: str  # the strategy
    cfg: SimConfig  # its configuration (tuning runs give each variant its own knob value)
    model: RankerModel
    optimizer: torch.optim.Optimizer
    dgu: DynamicGatingUnit | None
    rng: np.random.Generator
    generator: torch.Generator
    log: list[IntArray]  # rows of (user, catalogue index, label)
    counts: IntArray  # impressions per catalogue index in this policy's own log
    posterior: LinearPosterior | None = None
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


def _item_table(model: RankerModel) -> torch.Tensor:
    """The item-id embedding table (rows = the hashed buckets that ``Environment`` gives every item)."""
    table = getattr(getattr(model.embedding, "item", None), "weight", None)
    if not isinstance(table, torch.Tensor) or table.shape[0] != model.config.item_buckets:
        raise RuntimeError("the simulator needs model.embedding.item.weight [item_buckets, item_dim] to set the rows "
                           "of new items; RankerModel changed, adapt models/simulator.py::_item_table")
    return table


def _optimizer(model: RankerModel, cfg: SimConfig) -> torch.optim.Optimizer:
    """Adam at ``lr``; with ``item_lr`` > 0 the item table by SGD at ``item_lr`` instead (the update schedule)."""
    if cfg.item_lr <= 0:
        return torch.optim.Adam(model.parameters(), lr=cfg.lr)
    table = _item_table(model)
    rest = [p for p in model.parameters() if p is not table]
    return _TwoOptimizers(torch.optim.Adam(rest, lr=cfg.lr), torch.optim.SGD([table], lr=cfg.item_lr))


class _TwoOptimizers(torch.optim.Optimizer):
    """Adam for the dense parameters and SGD for the item table, stepped together."""

    def __init__(self, dense: torch.optim.Optimizer, table: torch.optim.Optimizer) -> None:
        self.parts = (dense, table)
        super().__init__([p for o in self.parts for g in o.param_groups for p in g["params"]], {})

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.parts:
            o.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for o in self.parts:
            o.step()


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
    table = _item_table(model)
    with torch.no_grad():
        new = torch.from_numpy(env.items.bucket[~env.items.established])
        est = torch.from_numpy(env.items.bucket[env.items.established])
        fill = table[est].mean(0) if cfg.new_init == "mean" else torch.zeros(table.shape[1])
        table[new] = fill
    return model, _dgu(model, env, rows, epochs=3, seed=seed)


def age_params(name: str, cfg: SimConfig) -> AGEParams:
    if name == "dropout_ts":
        return AGEParams(policy="ts", lam=1.0, dropout=cfg.ts_dropout, samples=1, use_gradient=False)
    ucb = name == "age_ucb"
    return AGEParams(policy="ucb" if ucb else "ts", lam=cfg.lam_ucb if ucb else cfg.lam, dropout=cfg.dropout,
                     samples=cfg.samples)  # fmt: skip


@dataclass
class Scored:
    pctr: F32
    score: F32
    moved: npt.NDArray[np.bool_]
    phi: torch.Tensor | None = None  # the linear bandits' features of every row


def _scores(policy: Policy, env: Environment, user: IntArray, items: IntArray) -> Scored:
    """(pCTR, explored score, moved) of every row of the round for the policy's model (moved rows are eligible
    ones with an exploration score; ``apply_budget`` decides which enter the slate)."""
    batch = env.batch(user, items)
    name, cfg = policy.name, policy.cfg
    eligible = policy.counts[items] < cfg.max_impressions
    if name.startswith("age_") or name == "dropout_ts":
        dgu = policy.dgu if name in ("age_ts", "age_ucb") else None
        out = explore(policy.model, batch, age_params(name, cfg), dgu=dgu, eligible=eligible,
                      generator=policy.generator)  # fmt: skip
        return Scored(out.pctr, out.score, out.moved)
    logit_t, hidden = last_hidden(policy.model, batch)
    logit = logit_t.numpy().astype(np.float64)
    pctr = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    if name in ("greedy", "egreedy"):
        return Scored(pctr, pctr, np.zeros(len(pctr), dtype=bool))
    if name == "count_ucb":
        bonus = cfg.count_c / np.sqrt(1.0 + policy.counts[items])
    else:
        assert policy.posterior is not None
        spread = np.sqrt(policy.posterior.spread(hidden.numpy(), items))
        if name.startswith("linucb"):
            bonus = (cfg.alpha_item if name == "linucb_item" else cfg.alpha_shared) * spread
        else:
            nu = cfg.nu_item if name == "lints_item" else cfg.nu_shared
            bonus = nu * spread * policy.rng.standard_normal(len(spread))
    moved = eligible & (bonus != 0)
    score = np.where(moved, 1.0 / (1.0 + np.exp(-(logit + bonus))), pctr).astype(np.float32)
    return Scored(pctr, score, moved, hidden)


def _show(policy: Policy, s: Scored, eligible: npt.NDArray[np.bool_]) -> tuple[IntArray, int]:
    """(indices into the round's rows shown by the policy: top_n per request, requests whose slate exploration
    changed)."""
    cfg = policy.cfg
    c, shown, moved = cfg.candidates, [], 0
    for q in range(len(s.pctr) // c):
        sl = slice(q * c, (q + 1) * c)
        if policy.name == "egreedy":
            idx, explored = egreedy_slate(s.pctr[sl], eligible[sl], cfg.top_n, cfg.budget, cfg.epsilon, policy.rng)
        else:
            idx, _, explored = apply_budget(s.pctr[sl], s.score[sl], s.moved[sl], cfg.top_n, cfg.budget)
        shown.append(q * c + idx)
        moved += bool(explored.any())
    return np.concatenate(shown), moved


def _oracle(cfg: SimConfig, p_true: FloatArray, uniform: FloatArray) -> int:
    """Clicks of top_n by the true probability (the headroom; same uniforms)."""
    p = p_true.reshape(-1, cfg.candidates)
    top = np.argsort(-p, axis=1, kind="stable")[:, : cfg.top_n]
    return int((np.take_along_axis(uniform.reshape(p.shape), top, 1) < np.take_along_axis(p, top, 1)).sum())


def _policy(name: str, warm: RankerModel, dgu: DynamicGatingUnit, env: Environment, cfg: SimConfig,
            seed: int) -> Policy:  # fmt: skip
    index = STRATEGIES.index(name)  # a strategy's own random streams do not depend on which others run
    model = copy.deepcopy(warm).eval()
    optimizer = _optimizer(model, cfg)
    generator = torch.Generator().manual_seed(seed * 100 + index)
    posterior = None
    if name.startswith(("linucb", "lints")):
        width = model.config.mlp_dims[-1]
        posterior = LinearPosterior(width, env.items.n, shared=name.endswith("shared"), reg=cfg.linear_reg)
    return Policy(name, cfg, model, optimizer, copy.deepcopy(dgu) if name in ("age_ts", "age_ucb") else None,
                  np.random.default_rng([seed, 3, index]), generator, [], np.zeros(env.items.n, dtype=np.int64),
                  posterior)  # fmt: skip


def run_seed(cfg: SimConfig, seed: int, strategies: tuple[str, ...] = STRATEGIES) -> dict[str, list[int]]:
    """Cumulative clicks per round of each strategy (and of ``oracle``) for one seed."""
    return run_variants(cfg, seed, [(name, name, {}) for name in strategies])


def run_variants(cfg: SimConfig, seed: int, variants: list[tuple[str, str, dict[str, Any]]]) -> dict[str, list[int]]:
    """Cumulative clicks per round of each variant (label, strategy, config overrides) and of ``oracle``, all on
    one seed's environment and warm model (built once)."""
    torch.set_num_threads(1)
    env = Environment(cfg, seed, model_config())
    warm, dgu = _warm_start(env, cfg, seed)
    policies = [(label, _policy(name, warm, dgu, env, replace(cfg, **over), seed)) for label, name, over in variants]
    curves: dict[str, list[int]] = {label: [] for label, _ in policies}
    curves["oracle"] = []
    changed = dict.fromkeys(curves, 0)
    oracle = 0
    for r in range(cfg.rounds):
        user, items, p_true, uniform = env.round(r)
        oracle += _oracle(cfg, p_true, uniform)
        curves["oracle"].append(oracle)
        for label, policy in policies:
            scored = _scores(policy, env, user, items)
            shown, moved = _show(policy, scored, policy.counts[items] < cfg.max_impressions)
            changed[label] += moved
            clicks = (uniform[shown] < p_true[shown]).astype(np.int64)
            policy.clicks += int(clicks.sum())
            curves[label].append(policy.clicks)
            np.add.at(policy.counts, items[shown], 1)
            if policy.posterior is not None and scored.phi is not None:
                policy.posterior.update(scored.phi.numpy()[shown], items[shown])
            policy.log.append(np.stack([user[shown], items[shown], clicks], axis=1))
            if (r + 1) % cfg.update_every == 0:
                rows = np.concatenate(policy.log)[-cfg.buffer :]
                policy.log = [rows]
                _fit(policy.model, policy.optimizer, env, rows, cfg.update_steps, cfg.update_batch, policy.rng)
                if policy.dgu is not None:
                    policy.dgu = _dgu(policy.model, env, rows, epochs=1, seed=seed + r, init=policy.dgu)
    for label, _ in policies:
        curves[f"{label}{MOVED}"] = [changed[label]]
    return curves


Job = tuple[dict[str, Any], int, list[tuple[str, str, dict[str, Any]]]]  # config, seed, variants


def _seed_job(job: Job) -> dict[str, list[int]]:
    cfg, seed, variants = job
    return run_variants(SimConfig(**cfg), seed, variants)


def _run_jobs(jobs: list[Job], workers: int, progress: bool,
              desc: str) -> list[dict[str, list[int]]]:  # fmt: skip
    """Run (config, seed, variants) jobs, in ``workers`` spawned processes when > 1 (one torch thread each)."""
    from tqdm import tqdm

    if workers > 1 and len(jobs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            return list(tqdm(pool.map(_seed_job, jobs), total=len(jobs), desc=desc, unit="run",
                             disable=not progress))  # fmt: skip
    return [_seed_job(j) for j in tqdm(jobs, desc=desc, unit="run", disable=not progress)]


def _check(strategies: tuple[str, ...]) -> None:
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; known: {list(STRATEGIES)}")


def _std(x: FloatArray) -> float:
    return float(x.std(ddof=1)) if len(x) > 1 else 0.0


def simulate(cfg: SimConfig, seeds: list[int], strategies: tuple[str, ...] = STRATEGIES, workers: int = 1,
             progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """Run every seed (one job per seed and strategy, in ``workers`` spawned processes) and summarise: cumulative
    clicks, the oracle headroom over greedy and each strategy's share of it, paired comparisons with ``age_ts``."""
    _check(strategies)
    started = time.perf_counter()
    groups = [strategies[i : i + GROUP] for i in range(0, len(strategies), GROUP)]  # a job: one seed, ≤ GROUP
    jobs: list[Job] = [(asdict(cfg), s, [(n, n, {}) for n in g]) for s in seeds for g in groups]
    runs = _run_jobs(jobs, workers, progress, "simulate")
    curves: dict[str, FloatArray] = {}
    changed: dict[str, float] = {}
    for name in strategies:
        curves[name] = np.asarray([run[name] for run in runs if name in run], dtype=np.float64)  # [seeds, rounds]
        moved = [run[f"{name}{MOVED}"][0] for run in runs if name in run]
        changed[name] = float(np.mean(moved)) / (cfg.rounds * cfg.users_per_round)
    curves["oracle"] = np.asarray([runs[i * len(groups)]["oracle"] for i in range(len(seeds))], dtype=np.float64)
    out = summarise(curves, cfg, seeds, time.perf_counter() - started)
    for name, share in changed.items():  # how often exploration changed the slate (the λ "moves slates")
        out["strategies"][name]["slates_changed_share"] = round(share, 4)
    return out


def summarise(curves: dict[str, FloatArray], cfg: SimConfig, seeds: list[int], seconds: float) -> dict[str, Any]:
    """The JSON summary of per-seed cumulative-click curves (see cli/simulate.py for the fields)."""
    finals = {name: c[:, -1] for name, c in curves.items()}
    oracle = finals["oracle"]
    greedy = finals.get("greedy")
    headroom = oracle - greedy if greedy is not None else None
    n = len(seeds)
    summary: dict[str, Any] = {}
    shares: dict[str, FloatArray] = {}
    for name, final in finals.items():
        if name == "oracle":
            continue
        row: dict[str, Any] = {"clicks_mean": round(float(final.mean()), 2), "clicks_std": round(_std(final), 2),
                               "clicks": final.astype(int).tolist()}  # fmt: skip
        if greedy is not None and headroom is not None:
            share = (final - greedy) / np.where(headroom == 0, np.nan, headroom)
            shares[name] = share
            row["lift_vs_greedy"] = round(float(final.mean() / greedy.mean() - 1.0), 4)
            row["headroom_share_mean"] = round(float(share.mean()), 4)
            row["headroom_share_std"] = round(_std(share), 4)
            row["headroom_share_se"] = round(_std(share) / np.sqrt(n), 4)
            row["headroom_share"] = [round(float(v), 4) for v in share]
        summary[name] = row
    out: dict[str, Any] = {
        "strategies": summary,
        "oracle": {"clicks_mean": round(float(oracle.mean()), 2), "clicks_std": round(_std(oracle), 2)},
        "seeds": seeds, "config": asdict(cfg), "curves": curves, "seconds": round(seconds, 1),
    }  # fmt: skip
    if headroom is not None and greedy is not None:
        out["headroom"] = {"clicks_mean": round(float(headroom.mean()), 2), "clicks_std": round(_std(headroom), 2),
                           "share_of_greedy": round(float(headroom.mean() / greedy.mean()), 4)}  # fmt: skip
    if "age_ts" in shares:  # paired over seeds (common random numbers): age_ts's share minus each other's
        paired = {}
        for name, share in shares.items():
            if name == "age_ts":
                continue
            d = shares["age_ts"] - share
            se = _std(d) / np.sqrt(n)
            paired[name] = {"diff_mean": round(float(d.mean()), 4), "diff_se": round(se, 4),
                            "z": round(float(d.mean() / se), 2) if se > 0 else None}  # fmt: skip
        out["age_ts_vs"] = paired
    if shares:
        out["best"] = max(shares, key=lambda k: float(np.nanmean(shares[k])))
    return out


def tune(cfg: SimConfig, seeds: list[int], strategies: tuple[str, ...] = tuple(KNOBS), workers: int = 1,
         progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """Every strategy's knob over its grid (KNOBS) on ``seeds`` (tuning seeds, disjoint from the reported ones):
    mean clicks per value, and the best value. Greedy runs beside them (the shares are against it)."""
    _check(strategies)
    started = time.perf_counter()
    variants: list[tuple[str, str, dict[str, Any]]] = [("greedy", "greedy", {})]
    for name in strategies:
        knob, grid = KNOBS[name]
        variants += [(f"{name}={value:g}", name, {knob: value}) for value in grid]
    per_job = -(-len(variants) // max(1, -(-workers * 2 // len(seeds))))  # about 2 jobs per worker
    jobs: list[Job] = [(asdict(cfg), s, variants[i : i + per_job]) for s in seeds
                       for i in range(0, len(variants), per_job)]  # fmt: skip
    runs = _run_jobs(jobs, workers, progress, "tune")
    finals: dict[tuple[str, int], float] = {}
    for (_, s, _), run in zip(jobs, runs, strict=True):
        for label, curve in run.items():
            if not label.endswith(MOVED):
                finals[(label, s)] = float(curve[-1])
    table: dict[str, dict[str, Any]] = {}
    for name in strategies:
        knob, grid = KNOBS[name]
        values = {}
        for value in grid:
            values[f"{value:g}"] = [round((finals[(f"{name}={value:g}", s)] - finals[("greedy", s)])
                                          / max(finals[("oracle", s)] - finals[("greedy", s)], 1.0), 4)
                                    for s in seeds]  # fmt: skip
        table[name] = {"knob": knob, "values": values}
    for row in table.values():
        means = {v: float(np.mean(x)) for v, x in row["values"].items()}
        row["best"] = float(max(means, key=lambda v: means[v]))  # the share of headroom, mean over the seeds
        row["mean_share"] = {v: round(m, 4) for v, m in means.items()}
    return {"tuning_seeds": seeds, "strategies": table, "seconds": round(time.perf_counter() - started, 1)}


def plot(result: dict[str, Any], path: str) -> None:
    """Left: cumulative clicks over rounds minus greedy's (mean over seeds, ±1 std band), oracle included.
    Right: the share of the oracle's headroom captured so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = result["curves"]
    base = curves.get("greedy")
    fig, axes = plt.subplots(1, 2 if base is not None else 1, figsize=(14 if base is not None else 8, 5.5))
    axes = np.atleast_1d(axes)
    for name, c in curves.items():
        x = np.arange(1, c.shape[1] + 1)
        y = c - base if base is not None else c
        mean, std = y.mean(0), y.std(0)
        style = "--" if name == "oracle" else "-"
        axes[0].plot(x, mean, style, label=name)
        axes[0].fill_between(x, mean - std, mean + std, alpha=0.12)
        if base is not None and name not in ("oracle", "greedy"):
            head = curves["oracle"] - base
            share = np.where(head > 0, (c - base) / np.maximum(head, 1), 0.0)
            axes[1].plot(x, 100 * share.mean(0), style, label=name)
    axes[0].set_xlabel("round")
    axes[0].set_ylabel("cumulative clicks − greedy's" if base is not None else "cumulative clicks")
    axes[0].set_title(f"exploration simulator ({len(result['seeds'])} seeds, mean ± std)")
    if base is not None:
        axes[1].set_xlabel("round")
        axes[1].set_ylabel("share of the oracle's headroom captured (%)")
        axes[1].set_ylim(-100, 100)
        axes[1].axhline(0, color="grey", lw=0.8)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
