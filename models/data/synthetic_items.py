"""The item-interest lifelong generator (``longrank data synthetic --interest items``): interest shown by ITEMS.

Where the category generator (models/data/synthetic.py) hides a user's long-term interest in three categories, here
it lies in a few dozen specific items and in the items close to them in a hidden taste space, far back in the
history, while categories say little. It tests what hard search cannot find: re-engagement of items, and the
neighbourhood of those items.

Generative model (user ``u`` draws from ``numpy.random.default_rng([seed, 1, u])``; the catalogue from
``default_rng([seed, 0])``; the same config writes the same files):

- Catalogue: ``items`` items with arbitrary int64 ids (sorted random ids, never 0..n-1), a unit taste vector
  ``v_i`` in ``taste_dim`` dimensions, a popularity ``pop_i`` (log-normal, ``popularity_sigma``) and a category.
  ``alignment`` ties categories to taste: each category has a unit centre ``m_c`` and
  ``v_i = normalise(alignment·m_c + sqrt(1 − alignment²)·z_i)`` with ``z_i`` a random unit vector; at 1 the
  category says nearly everything about taste, at 0 nothing (categories are drawn uniformly either way).
- User: a unit long-term taste ``t_u``; ``favourites`` ~ uniform[FAV_MIN, FAV_MAX] favourite items drawn with
  weight ``pop · exp(FAV_SHARPNESS · v·t_u)``; the ``NEIGHBOURS`` nearest items (by taste) of each favourite are its
  neighbours.
- History of ``n`` behaviours, behaviour ``i`` at relative position ``x = i/n``: a favourite again with
  probability ``P_FAV · exp(−x/DECAY)``, a neighbour of a favourite with ``P_NEIGHBOUR · exp(−x/DECAY)`` (both
  mostly far back: under 1% of the last 200 behaviours of a 5,000-long history; with ``P_SESSION`` the neighbour
  is one of the latest re-engaged favourite's, as in a session around it), else with ``P_SHORT`` a short-term
  browse (segments of geometric length, mean ``SEGMENT_MEAN``, each among the taste neighbours of one popular
  anchor item), else a popular item (weight ``pop``). Re-engaged favourites carry strong actions (like, purchase)
  more often. Time as in the category generator (1–3 years, exponential gaps, ending in the week before END_TS).
- Samples after the last behaviour: candidates are a favourite (``MIX["favourite"]``), a neighbour of a favourite,
  an item of the user's taste, or a popular item; ground truth::

      clean  = B0 + B_FAV·[favourite] + B_NEIGHBOUR·max(0, max_f v·v_f − NEIGHBOUR_FLOOR)/(1 − NEIGHBOUR_FLOOR)
               + B_TASTE·v·t_u + B_POP·zscore(log pop) + B_SHORT·v·s_now
      p_true = sigmoid(clean + ε),  ε ~ N(0, noise)  (per sample)

  ``p_clean = sigmoid(clean)`` is the noise-free truth: its AUC is the reachable ceiling; ``p_true``'s is the
  oracle. ``kind`` names the candidate's draw (favourite / neighbour / taste / popular) and ``truth_*`` the terms of the
  clean logit. Each item's taste vector, popularity, category and ``NEIGHBOURS`` nearest items are written to
  ``truth_items.parquet``: ground truth for evaluation (a sample's evidence is its history's behaviours of the
  target item and of the target's neighbours); models never read it.
- Split per user by sample time, as everywhere: last k = max(1, round(n/10)) test, the k before valid, rest train.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from models.data.files import BEHAVIORS_FILE, SAMPLE_FIELDS, SAMPLES_FILE, prepare_out_dir, write_meta
from models.data.synthetic import SOURCE, auc_of, draw_actions, sigmoid, stream_users, timeline
from models.data.synthetic import user_name as category_user_name

INTEREST = "items"
TRUTH_FILE = "truth_items.parquet"
FAV_MIN, FAV_MAX = 20, 50
FAV_SHARPNESS = 3.0
NEIGHBOURS = 20
P_FAV, P_NEIGHBOUR, DECAY = 0.12, 0.12, 0.25
P_SESSION = 0.7
P_SHORT = 0.6
SEGMENT_MEAN = 150
B0, B_FAV, B_NEIGHBOUR, B_TASTE, B_POP, B_SHORT = -2.0, 1.8, 3.0, 0.8, 0.4, 0.5
NEIGHBOUR_FLOOR = 0.5
MIX = {"favourite": 0.25, "neighbour": 0.2, "taste": 0.15, "popular": 0.4}
KINDS = tuple(MIX)
TERMS = ("truth_base", "truth_favourite", "truth_neighbour", "truth_taste", "truth_popularity", "truth_short")
ACTION_PROBS = {  # per behaviour kind: P(view), P(click), P(like/cart), P(purchase)
    "favourite": (0.2, 0.3, 0.3, 0.2),
    "neighbour": (0.4, 0.35, 0.15, 0.1),
    "short": (0.55, 0.35, 0.07, 0.03),
    "popular": (0.8, 0.15, 0.04, 0.01),
}


@dataclass(frozen=True)
class ItemInterestConfig:
    """The item-interest generator's parameters (all written into meta.json)."""

    users: int = 1_000
    length: int = 8_000
    min_length: int | None = 3_000
    items: int = 50_000
    categories: int = 100
    taste_dim: int = 16
    alignment: float = 0.3  # 1 = a category is a taste region, 0 = categories independent of taste
    popularity_sigma: float = 1.0
    noise: float = 0.3  # std of the per-sample logit noise (p_true = p_clean + noise)
    samples_per_user: int = 40
    seed: int = 0

    def __post_init__(self) -> None:
        lo = self.length if self.min_length is None else self.min_length
        checks = {"users": (self.users, 1), "length": (self.length, 1), "categories": (self.categories, 1),
                  "taste_dim": (self.taste_dim, 2), "samples_per_user": (self.samples_per_user, 3),
                  "seed": (self.seed, 0), "items": (self.items, FAV_MAX * (NEIGHBOURS + 1) + 1)}  # fmt: skip
        for name, (value, low) in checks.items():
            if value < low:
                raise ValueError(f"{name}={value} must be >= {low}")
        if not 1 <= lo <= self.length:
            raise ValueError(f"min_length={lo} must be in [1, length={self.length}]")
        if not 0.0 <= self.alignment <= 1.0:
            raise ValueError(f"alignment={self.alignment} must be in [0, 1]")
        if self.noise < 0 or self.popularity_sigma < 0:
            raise ValueError(f"noise={self.noise} and popularity_sigma={self.popularity_sigma} must be >= 0")

    @property
    def lengths(self) -> tuple[int, int]:
        return (self.length if self.min_length is None else self.min_length), self.length


@dataclass(frozen=True)
class Catalogue:
    """Every item's id, category, unit taste vector and popularity (weights summing to 1)."""

    item_id: npt.NDArray[np.int64]
    category: npt.NDArray[np.int64]
    taste: npt.NDArray[np.float64]  # [n, taste_dim], unit rows
    popularity: npt.NDArray[np.float64]
    log_pop_z: npt.NDArray[np.float64]  # z-score of log popularity (the ground truth's popularity term)
    knn: npt.NDArray[np.int64]  # [n, NEIGHBOURS] each item's nearest other items by taste


def _unit(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return out


def make_catalogue(cfg: ItemInterestConfig) -> Catalogue:
    rng = np.random.default_rng([cfg.seed, 0])
    n = cfg.items
    ids = np.unique(rng.integers(1, 2**40, size=n + n // 10))
    ids = np.sort(rng.choice(ids, size=n, replace=False)).astype(np.int64)
    category = rng.integers(0, cfg.categories, size=n).astype(np.int64)
    centres = _unit(rng.standard_normal((cfg.categories, cfg.taste_dim)))
    own = _unit(rng.standard_normal((n, cfg.taste_dim)))
    a = cfg.alignment
    taste = _unit(a * centres[category] + np.sqrt(1.0 - a * a) * own)
    log_pop = rng.normal(0.0, cfg.popularity_sigma, size=n)
    popularity = np.exp(log_pop)
    popularity /= popularity.sum()
    z = (log_pop - log_pop.mean()) / max(float(log_pop.std()), 1e-9)
    return Catalogue(ids, category, taste, popularity, z, nearest_items(taste, NEIGHBOURS))


def nearest_items(taste: npt.NDArray[np.float64], k: int) -> npt.NDArray[np.int64]:
    """[n, k] the k items of largest taste inner product with each item, itself excluded (Faiss, exact)."""
    vectors = np.ascontiguousarray(taste, dtype=np.float32)
    _, found = faiss.knn(vectors, vectors, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    own = found == np.arange(len(vectors))[:, None]
    own[:, -1] |= ~own.any(axis=1)  # itself not returned (ties): drop the last instead
    out: npt.NDArray[np.int64] = np.asarray(found)[~own].reshape(len(vectors), k).astype(np.int64)
    return out


def _draw(rng: np.random.Generator, weights: npt.NDArray[np.float64], size: int) -> npt.NDArray[np.int64]:
    """``size`` catalogue rows drawn with replacement, with probability proportional to ``weights``."""
    cum = np.cumsum(weights)
    rows: npt.NDArray[np.int64] = np.searchsorted(cum, rng.random(size) * cum[-1], side="right").astype(np.int64)
    out: npt.NDArray[np.int64] = np.minimum(rows, len(weights) - 1)
    return out


def _tilted(cat: Catalogue, direction: npt.NDArray[np.float64], sharpness: float) -> npt.NDArray[np.float64]:
    """Popularity tilted towards a taste direction: pop · exp(sharpness · v·direction)."""
    score = cat.taste @ direction
    out: npt.NDArray[np.float64] = cat.popularity * np.exp(sharpness * (score - score.max()))
    return out


@dataclass
class ItemUser:
    user_id: str
    behaviors: dict[str, npt.NDArray[Any]]
    samples: dict[str, npt.NDArray[Any]]


def user_name(u: int) -> str:
    return category_user_name(u)


def generate_user(cfg: ItemInterestConfig, cat: Catalogue, u: int) -> ItemUser:
    rng = np.random.default_rng([cfg.seed, 1, u])
    lo, hi = cfg.lengths
    n = int(rng.integers(lo, hi + 1))
    taste_u = _unit(rng.standard_normal(cfg.taste_dim))
    n_fav = int(rng.integers(FAV_MIN, FAV_MAX + 1))
    weights = _tilted(cat, taste_u, FAV_SHARPNESS)
    fav = np.unique(_draw(rng, weights, 3 * n_fav))[:n_fav]
    fav = rng.permutation(fav)
    n_fav = len(fav)
    neighbours = cat.knn[fav].reshape(-1)  # [F·NEIGHBOURS]

    ts, end = timeline(rng, n)
    x = np.arange(n) / n
    decay = np.exp(-x / DECAY)
    draw = rng.random(n)
    kind = np.full(n, 3, dtype=np.int64)  # 0 favourite, 1 neighbour, 2 short-term taste, 3 popular
    kind[draw < P_FAV * decay + P_NEIGHBOUR * decay] = 1
    kind[draw < P_FAV * decay] = 0
    kind[(kind == 3) & (rng.random(n) < P_SHORT)] = 2
    rows = _draw(rng, cat.popularity, n)
    rows[kind == 0] = fav[rng.integers(0, n_fav, int((kind == 0).sum()))]
    # a neighbour is mostly one of the latest re-engaged favourite's (a session around it), else any favourite's
    latest = np.maximum.accumulate(np.where(kind == 0, np.arange(n), -1))
    nb = np.flatnonzero(kind == 1)
    anchor = np.where((latest[nb] >= 0) & (rng.random(len(nb)) < P_SESSION), rows[np.maximum(latest[nb], 0)],
                      fav[rng.integers(0, n_fav, len(nb))])  # fmt: skip
    rows[nb] = cat.knn[anchor, rng.integers(0, NEIGHBOURS, len(nb))]
    seg_len = rng.geometric(1.0 / SEGMENT_MEAN, size=n // SEGMENT_MEAN * 3 + 8)
    segment = np.repeat(np.arange(len(seg_len)), seg_len)[:n]
    anchors = _draw(rng, cat.popularity, int(segment[-1]) + 1)  # each segment browses one item's neighbourhood
    short = kind == 2
    rows[short] = cat.knn[anchors[segment[short]], rng.integers(0, NEIGHBOURS, int(short.sum()))]
    behaviors: dict[str, npt.NDArray[Any]] = {
        "ts": ts,
        "item_id": cat.item_id[rows],
        "category_id": cat.category[rows].astype(np.int32),
        "action": draw_actions(rng, kind, ACTION_PROBS),
    }

    m = cfg.samples_per_user
    s_ts = np.sort(end + rng.integers(60, 86_400, m))
    mix = np.array(list(MIX.values()))
    s_kind = np.searchsorted(np.cumsum(mix), rng.random(m) * mix.sum(), side="right").clip(0, len(mix) - 1)
    s_rows = _draw(rng, cat.popularity, m)
    s_rows[s_kind == 0] = fav[rng.integers(0, n_fav, int((s_kind == 0).sum()))]
    s_rows[s_kind == 1] = neighbours[rng.integers(0, len(neighbours), int((s_kind == 1).sum()))]
    s_rows[s_kind == 2] = _draw(rng, weights, int((s_kind == 2).sum()))
    terms = clean_terms(cat, s_rows, fav, taste_u, cat.taste[anchors[segment[-1]]])
    clean = np.sum(list(terms.values()), axis=0)
    p_true = sigmoid(clean + rng.normal(0.0, cfg.noise, m)) if cfg.noise > 0 else sigmoid(clean)
    label = (rng.random(m) < p_true).astype(np.uint8)
    k = max(1, round(m / 10))
    samples: dict[str, npt.NDArray[Any]] = {
        "ts": s_ts,
        "item_id": cat.item_id[s_rows],
        "category_id": cat.category[s_rows].astype(np.int32),
        "label": label,
        "p_true": p_true.astype(np.float32),
        "split": np.array(["train"] * (m - 2 * k) + ["valid"] * k + ["test"] * k),
        "p_clean": sigmoid(clean).astype(np.float32),
        "kind": np.array(KINDS)[s_kind],
        **{name: value.astype(np.float32) for name, value in terms.items()},
    }
    return ItemUser(user_name(u), behaviors, samples)


def clean_terms(
    cat: Catalogue,
    rows: npt.NDArray[np.int64],
    fav: npt.NDArray[np.int64],
    taste_u: npt.NDArray[np.float64],
    short_now: npt.NDArray[np.float64],
) -> dict[str, npt.NDArray[np.float64]]:
    """The terms of the noise-free ground-truth logit of candidate catalogue rows for one user (module docstring);
    their sum is the logit."""
    v = cat.taste[rows]  # [m, D]
    is_fav = np.isin(rows, fav)
    near = (v @ cat.taste[fav].T).max(axis=1)  # [m] closest favourite (1.0 for a favourite)
    near = np.where(is_fav, 0.0, np.maximum(0.0, near - NEIGHBOUR_FLOOR) / (1.0 - NEIGHBOUR_FLOOR))
    return {
        "truth_base": np.full(len(rows), B0),
        "truth_favourite": B_FAV * is_fav,
        "truth_neighbour": B_NEIGHBOUR * near,
        "truth_taste": B_TASTE * (v @ taste_u),
        "truth_popularity": B_POP * cat.log_pop_z[rows],
        "truth_short": B_SHORT * (v @ short_now),
    }


def _iter_users(cfg: ItemInterestConfig, cat: Catalogue, progress: bool) -> Iterator[ItemUser]:
    with tqdm(total=cfg.users, unit="user", desc="synthetic items", disable=not progress, mininterval=0.5) as bar:
        for u in range(cfg.users):
            yield generate_user(cfg, cat, u)
            bar.update(1)


def write_item_interest(out_dir: str | Path, cfg: ItemInterestConfig, *, progress: bool = True) -> dict[str, Any]:
    """Generate the dataset: DIR/behaviors.parquet, DIR/samples.parquet, DIR/truth_items.parquet, DIR/meta.json."""
    out = prepare_out_dir(out_dir)
    cat = make_catalogue(cfg)
    seen = np.zeros(cfg.items, dtype=bool)  # catalogue rows that occur in some history

    def marking(users: Iterator[Any]) -> Iterator[Any]:
        for data in users:
            seen[np.searchsorted(cat.item_id, data.behaviors["item_id"])] = True
            yield data

    samples, written = stream_users(out / BEHAVIORS_FILE, marking(_iter_users(cfg, cat, progress)))
    sample_schema = pa.schema([*SAMPLE_FIELDS, pa.field("p_clean", pa.float32(), nullable=False),
                               pa.field("kind", pa.string(), nullable=False),
                               *(pa.field(name, pa.float32(), nullable=False) for name in TERMS)])  # fmt: skip
    pq.write_table(pa.Table.from_pandas(samples, schema=sample_schema, preserve_index=False), out / SAMPLES_FILE)
    truth = pa.table({"item_id": cat.item_id, "category_id": cat.category.astype(np.int32),
                      "popularity": cat.popularity, "taste": list(cat.taste.astype(np.float32)),
                      "neighbours": list(cat.item_id[cat.knn])})  # fmt: skip
    pq.write_table(truth, out / TRUTH_FILE)
    meta: dict[str, Any] = {
        "source": SOURCE,
        "interest": INTEREST,
        "actions": [0, 1, 2, 3],
        "strong_action": 2,
        "n_users": cfg.users,
        "n_items": int(np.count_nonzero(seen)),
        "n_categories": cfg.categories,
        "n_behaviors": written,
        "n_samples": len(samples),
        "order": "user,ts",
        "config": asdict(cfg),
        "generator": {
            "fav_range": [FAV_MIN, FAV_MAX], "fav_sharpness": FAV_SHARPNESS, "neighbours": NEIGHBOURS,
            "p_fav": P_FAV, "p_neighbour": P_NEIGHBOUR, "p_session": P_SESSION, "decay": DECAY, "p_short": P_SHORT,
            "segment_mean": SEGMENT_MEAN, "b0": B0, "b_fav": B_FAV,
            "b_neighbour": B_NEIGHBOUR, "b_taste": B_TASTE, "b_pop": B_POP, "b_short": B_SHORT,
            "neighbour_floor": NEIGHBOUR_FLOOR, "candidate_mix": MIX,
            "action_probs": {k: list(v) for k, v in ACTION_PROBS.items()},
        },
        "oracle_auc_test": auc_of(samples, "p_true", "test"),
        "ceiling_auc_test": auc_of(samples, "p_clean", "test"),
        "licence": "generated data, no licence restriction",
    }
    write_meta(out, meta)
    return meta
