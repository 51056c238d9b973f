"""The exploration simulator's world (models/simulator.py runs strategies in it): users with fixed histories and
their precomputed features, an item catalogue that turns over (new items with fresh, informationless embedding rows),
the candidate sets of each round and the true click probabilities. The environment itself is described in
models/simulator.py's docstring."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import torch

from models.config import ModelConfig
from models.data.synthetic import B0, B_LONG, B_SHORT, END_TS, SyntheticConfig, generate_user, sigmoid
from models.features import Batch, action_index, hash_categories, hash_items
from models.layers import TimeBuckets
from retrieval.gsu_kinds import KIND_CATEGORY

if TYPE_CHECKING:
    from models.simulator import SimConfig

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
ITEM_ID_BASE = 10**12  # raw ids of the simulated items: far from every id of the generator's histories


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
        tag = np.where(lm, 1 + 2 * KIND_CATEGORY, 0)  # hard search; a simulated item is never in a history
        self.long = (t(long_b), t(hash_categories(long[1], lm, mcfg)), t(action_index(long[2], lm, mcfg)),
                     t(long[3]), t(lm), t(tag))  # fmt: skip
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
            long_tag=self.long[5][rows_u, ct],
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
        return sigmoid(B0 + self.cfg.base_logit + B_LONG * lc + B_SHORT * sc + self.items.quality[k])

    def round(self, r: int) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
        """The round's rows (user, catalogue index), their true click probabilities and uniforms for the clicks:
        the same for every strategy."""
        rng = np.random.default_rng([self.seed, 1, r])
        cfg = self.cfg
        users = rng.choice(cfg.users, cfg.users_per_round, replace=False).astype(np.int64)
        items = self.candidates(rng, users, self.items.live(r), cfg.candidates).reshape(-1)
        user = np.repeat(users, cfg.candidates)
        return user, items, self.p_true(user, items), rng.random(len(user))
