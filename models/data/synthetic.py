"""A seeded generator of lifelong behaviour histories with a known click probability (ground truth).

Generative model (every draw of user ``u`` comes from ``numpy.random.default_rng([seed, u])``, so a user's data
does not depend on how many users are generated, and the same seed writes the same files):

- Categories ``0..C-1``; items live in per-category pools that are renewed every ``EPOCH_S`` (30 days):
  ``item_id = ((epoch * C) + category) * POOL + k`` with ``k`` skewed to small values (popular items), so item ids
  grow with time, new items keep appearing and an item's category is ``(item_id // POOL) % C``. An event takes
  an item of the current epoch, or with probability ``P_OLD`` of an older one (geometric number of epochs back).
- Each user has ``N_LONG`` (3) long-term interest categories. Their evidence lies FAR BACK: behaviour ``i`` of
  ``n`` is a long-term event with probability ``P_LONG_MAX * exp(-(i/n) / LONG_DECAY)`` (0.8 at the start, under
  1% in the last 5%), mostly with strong actions (likes, purchases).
- Short-term drift: the history is cut into segments of geometric length (mean ``SEGMENT_MEAN`` behaviours); each
  segment has ``N_SHORT`` (2) categories drawn from outside the long-term ones. A non-long event belongs to the
  current segment's categories with probability ``P_SHORT`` (mostly views and clicks), otherwise it is noise on a
  uniform category (mostly views). The last ~50 behaviours are thus dominated by the current short-term
  categories and carry (almost) no trace of the long-term interests.
- Time: exponential gaps (at least 1 s), scaled so a user's history spans 1-3 years and ends within the week
  before ``END_TS`` (2025-01-01, fixed so output does not depend on the clock); ts strictly increase per user.
- Actions in {0 view, 1 click, 2 like/cart, 3 purchase}, drawn from a distribution per event kind.
- Ground truth for a (user, candidate item, time after the last behaviour)::

      p_true = sigmoid(B0 + B_LONG*[cat in user's long-term] + B_SHORT*[cat in current short-term] + quality(item))

  ``quality`` is a fixed hash of (seed, item_id) mapped to [-QUALITY, QUALITY]. A model that sees only the last
  ~50 behaviours can find the short-term term and learn item quality, but not the long-term term; a model that
  searches the whole history by the candidate's category can.
- Evaluation samples: ``samples_per_user`` per user, at times after the user's last behaviour (60 s to 1 day
  later), so a sample's history is ALL of the user's behaviours (every behaviour ts < sample ts). Candidate
  categories: half from the user's long-term categories, a quarter from the current short-term ones, a quarter
  uniform (so both terms of the ground truth are exercised); items from the pools of the sample's epoch;
  ``label ~ Bernoulli(p_true)``. ``p_recent`` (an extra column) is the ground truth with the long-term term
  dropped and "short-term" read off the last ``RECENT`` behaviours (categories seen at least 3 times there): the
  best a recent-only model can do, used to show the long-term signal (``recent_only_auc``).
- Split per user by sample time, like the MovieLens protocol: of a user's n samples the last
  k = max(1, round(n/10)) are "test", the k before them "valid", the rest "train".

behaviors.parquet is written user by user (each user's events contiguous, in time order: meta "order" is
"user,ts"), streamed in row groups so 2,000 users x 54,000 behaviours never sit in memory at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from models.data.files import (
    BEHAVIORS_FILE,
    SAMPLE_FIELDS,
    SAMPLES_FILE,
    behavior_schema,
    prepare_out_dir,
    write_meta,
)

SOURCE = "synthetic"
ACTIONS = (0, 1, 2, 3)
END_TS = 1_735_689_600  # 2025-01-01T00:00:00Z: every history ends in the week before
EPOCH0_TS = 1_577_836_800  # 2020-01-01: epoch 0 of the item pools
EPOCH_S = 30 * 86_400
POOL = 50  # items per (category, epoch) pool
P_OLD = 0.2  # chance an event takes an item of an older epoch
N_LONG, N_SHORT = 3, 2
P_LONG_MAX, LONG_DECAY = 0.8, 0.2
P_SHORT = 0.7
SEGMENT_MEAN = 150
SPAN_DAYS = (365, 3 * 365)
B0, B_LONG, B_SHORT, QUALITY = -2.0, 2.5, 1.5, 1.0
RECENT = 50
ACTION_PROBS = {  # per event kind: P(view), P(click), P(like/cart), P(purchase)
    "long": (0.15, 0.30, 0.30, 0.25),
    "short": (0.50, 0.35, 0.10, 0.05),
    "noise": (0.80, 0.15, 0.04, 0.01),
}
ROW_GROUP_ROWS = 1_000_000


@dataclass(frozen=True)
class SyntheticConfig:
    """The generator's parameters (all written into meta.json)."""

    users: int = 2_000
    length: int = 54_000  # max behaviours per user
    min_length: int | None = None  # per-user length ~ uniform[min_length, length]; None -> length
    categories: int = 100
    samples_per_user: int = 40
    seed: int = 0

    def __post_init__(self) -> None:
        lo = self.length if self.min_length is None else self.min_length
        if self.users < 1:
            raise ValueError(f"users={self.users} must be >= 1")
        if self.length < 1:
            raise ValueError(f"length={self.length} must be >= 1")
        if not 1 <= lo <= self.length:
            raise ValueError(f"min_length={lo} must be in [1, length={self.length}]")
        if self.categories < N_LONG + N_SHORT + 1:
            raise ValueError(f"categories={self.categories} must be >= {N_LONG + N_SHORT + 1}")
        if self.samples_per_user < 3:
            raise ValueError(f"samples_per_user={self.samples_per_user} must be >= 3 (train, valid and test)")
        if self.seed < 0:
            raise ValueError(f"seed={self.seed} must be >= 0")

    @property
    def lengths(self) -> tuple[int, int]:
        return (self.length if self.min_length is None else self.min_length), self.length


@dataclass
class UserData:
    """One generated user: behaviour columns (time order) and evaluation sample columns."""

    user_id: str
    behaviors: dict[str, npt.NDArray[Any]]
    samples: dict[str, npt.NDArray[Any]]
    long_cats: npt.NDArray[np.int64]  # ground truth: the user's long-term interest categories
    short_cats: npt.NDArray[np.int64]  # ground truth: the short-term categories at sample time


def user_name(u: int) -> str:
    return f"u{u:06d}"


def sigmoid(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-x))
    return out


def item_quality(item_id: npt.NDArray[np.int64], seed: int) -> npt.NDArray[np.float64]:
    """A fixed pseudo-random quality in [-QUALITY, QUALITY] per item (splitmix64 hash of seed and id)."""
    with np.errstate(over="ignore"):
        z = item_id.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15) * np.uint64(seed + 1)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    unit = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    out: npt.NDArray[np.float64] = QUALITY * (2.0 * unit - 1.0)
    return out


def ground_truth(
    cats: npt.NDArray[np.int64],
    items: npt.NDArray[np.int64],
    long_cats: npt.NDArray[np.int64],
    short_cats: npt.NDArray[np.int64],
    seed: int,
) -> npt.NDArray[np.float64]:
    """p_true of candidates (cats, items) for a user with these long-term and current short-term categories."""
    logit = B0 + B_LONG * np.isin(cats, long_cats) + B_SHORT * np.isin(cats, short_cats) + item_quality(items, seed)
    return sigmoid(logit)


def _items(
    rng: np.random.Generator, cats: npt.NDArray[np.int64], ts: npt.NDArray[np.int64], n_cat: int
) -> npt.NDArray[np.int64]:
    n = len(cats)
    epoch = (ts - EPOCH0_TS) // EPOCH_S
    back = np.where(rng.random(n) < P_OLD, rng.geometric(0.3, n), 0)
    epoch = np.maximum(epoch - back, 0)
    k = (POOL * rng.random(n) ** 2).astype(np.int64)
    items: npt.NDArray[np.int64] = (epoch * n_cat + cats) * POOL + k
    return items


def draw_actions(
    rng: np.random.Generator, kind: npt.NDArray[np.int64], probs: Mapping[str, tuple[float, ...]] = ACTION_PROBS
) -> npt.NDArray[np.uint8]:
    """One action per behaviour from the distribution of its kind (``kind`` indexes ``probs`` in order)."""
    table = np.array(list(probs.values()))
    cum = np.cumsum(table, axis=1)  # (kinds, actions)
    u = rng.random(len(kind))
    actions: npt.NDArray[np.uint8] = (u[:, None] >= cum[kind, :-1]).sum(axis=1).astype(np.uint8)
    return actions


def timeline(rng: np.random.Generator, n: int) -> tuple[npt.NDArray[np.int64], int]:
    """``n`` strictly increasing timestamps (exponential gaps >= 1 s) spanning SPAN_DAYS, the last in the week
    before END_TS; returns (ts, the last ts)."""
    end = END_TS - int(rng.integers(3_600, 7 * 86_400))
    span = float(rng.uniform(*SPAN_DAYS)) * 86_400
    gaps = rng.exponential(size=n)
    gaps = np.maximum(1, np.round(gaps * (span / max(gaps.sum(), 1e-9)))).astype(np.int64)
    back = np.cumsum(gaps) - gaps[0]  # seconds before the last behaviour, newest first
    return (end - back)[::-1].copy(), end


def generate_user(cfg: SyntheticConfig, u: int) -> UserData:
    """Generate user ``u``'s history and evaluation samples (vectorised; deterministic in (seed, u))."""
    rng = np.random.default_rng([cfg.seed, u])
    n_cat = cfg.categories
    lo, hi = cfg.lengths
    n = int(rng.integers(lo, hi + 1))
    long_cats = rng.choice(n_cat, size=N_LONG, replace=False).astype(np.int64)

    ts, end = timeline(rng, n)

    # short-term segments, each with N_SHORT categories outside the long-term ones
    seg_len = rng.geometric(1.0 / SEGMENT_MEAN, size=n // SEGMENT_MEAN * 3 + 8)
    while seg_len.sum() < n:
        seg_len = np.concatenate([seg_len, rng.geometric(1.0 / SEGMENT_MEAN, size=len(seg_len))])
    keys = rng.random((len(seg_len), n_cat))
    keys[:, long_cats] = np.inf
    seg_cats = np.argpartition(keys, N_SHORT, axis=1)[:, :N_SHORT].astype(np.int64)
    segment = np.repeat(np.arange(len(seg_len)), seg_len)[:n]

    # event kinds and categories: 0 long-term, 1 short-term, 2 noise
    x = np.arange(n) / n
    is_long = rng.random(n) < P_LONG_MAX * np.exp(-x / LONG_DECAY)
    is_short = ~is_long & (rng.random(n) < P_SHORT)
    kind = np.where(is_long, 0, np.where(is_short, 1, 2)).astype(np.int64)
    cats = np.where(
        is_long,
        long_cats[rng.integers(0, N_LONG, n)],
        np.where(is_short, seg_cats[segment, rng.integers(0, N_SHORT, n)], rng.integers(0, n_cat, n)),
    ).astype(np.int64)
    behaviors: dict[str, npt.NDArray[Any]] = {
        "ts": ts,
        "item_id": _items(rng, cats, ts, n_cat),
        "category_id": cats.astype(np.int32),
        "action": draw_actions(rng, kind),
    }

    # evaluation samples after the last behaviour
    m = cfg.samples_per_user
    short_now = seg_cats[segment[-1]]
    s_ts = np.sort(end + rng.integers(60, 86_400, m))
    choice = rng.random(m)
    s_cats = np.where(
        choice < 0.5,
        long_cats[rng.integers(0, N_LONG, m)],
        np.where(choice < 0.75, short_now[rng.integers(0, N_SHORT, m)], rng.integers(0, n_cat, m)),
    ).astype(np.int64)
    s_items = _items(rng, s_cats, s_ts, n_cat)
    p_true = ground_truth(s_cats, s_items, long_cats, short_now, cfg.seed)
    label = (rng.random(m) < p_true).astype(np.uint8)
    recent_counts = np.bincount(cats[-RECENT:], minlength=n_cat)
    seen_recently = np.flatnonzero(recent_counts >= 3)
    p_recent = sigmoid(B0 + B_SHORT * np.isin(s_cats, seen_recently) + item_quality(s_items, cfg.seed))
    k = max(1, round(m / 10))
    split = np.array(["train"] * (m - 2 * k) + ["valid"] * k + ["test"] * k)
    samples: dict[str, npt.NDArray[Any]] = {
        "ts": s_ts,
        "item_id": s_items,
        "category_id": s_cats.astype(np.int32),
        "label": label,
        "p_true": p_true.astype(np.float32),
        "split": split,
        "p_recent": p_recent.astype(np.float32),
    }
    return UserData(user_name(u), behaviors, samples, long_cats, short_now)


def _constant_strings(value: str, n: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([value])).cast(pa.string())


def behavior_table(users: Sequence[Any], first_row: int, schema: pa.Schema) -> pa.Table:
    """The behaviors.parquet rows of ``users`` (objects with ``user_id`` and ``behaviors`` columns)."""
    cols = {k: np.concatenate([d.behaviors[k] for d in users]) for k in ("item_id", "category_id", "ts", "action")}
    n = len(cols["ts"])
    user_col = pa.concat_arrays([_constant_strings(d.user_id, len(d.behaviors["ts"])) for d in users])
    rows = pa.array(np.arange(first_row, first_row + n, dtype=np.int64)).cast(pa.string())
    event_id = pc.binary_join_element_wise(pa.scalar(f"{SOURCE}-"), rows, pa.scalar(""))
    return pa.table(
        {
            "user_id": user_col,
            "item_id": cols["item_id"],
            "category_id": cols["category_id"],
            "ts": cols["ts"],
            "action": cols["action"],
            "event_id": event_id,
        },
        schema=schema,
    )


def _iter_users(cfg: SyntheticConfig, progress: bool) -> Iterator[UserData]:
    bar = tqdm(
        total=cfg.users, unit="user", desc="synthetic", disable=not progress, dynamic_ncols=True, mininterval=0.5
    )
    events = 0
    with bar:
        for u in range(cfg.users):
            data = generate_user(cfg, u)
            events += len(data.behaviors["ts"])
            bar.update(1)
            bar.set_postfix(events=f"{events:,}", refresh=False)
            yield data


def stream_users(path: Path, users: Iterable[Any]) -> tuple[pd.DataFrame, int]:
    """Write each user's behaviours to the behaviours file at ``path`` in row groups of about ROW_GROUP_ROWS (so
    the whole dataset never sits in memory) and gather their samples (a ``user_id`` column first). ``users`` yields
    objects with ``user_id``, ``behaviors`` and ``samples`` (both generators' UserData). -> (samples, behaviours
    written)."""
    schema = behavior_schema()
    sample_parts: list[pd.DataFrame] = []
    pending: list[Any] = []
    pending_rows = written = 0
    with pq.ParquetWriter(path, schema) as writer:
        for data in users:
            frame = pd.DataFrame(data.samples)
            frame.insert(0, "user_id", data.user_id)
            sample_parts.append(frame)
            pending.append(data)
            pending_rows += len(data.behaviors["ts"])
            if pending_rows >= ROW_GROUP_ROWS:
                writer.write_table(behavior_table(pending, written, schema), row_group_size=pending_rows)
                written, pending, pending_rows = written + pending_rows, [], 0
        if pending:
            writer.write_table(behavior_table(pending, written, schema), row_group_size=pending_rows)
            written += pending_rows
    return pd.concat(sample_parts, ignore_index=True), written


def write_synthetic(out_dir: str | Path, cfg: SyntheticConfig, *, progress: bool = True) -> dict[str, Any]:
    """Generate ``cfg.users`` users, stream DIR/behaviors.parquet, write DIR/samples.parquet and DIR/meta.json."""
    out = prepare_out_dir(out_dir)
    max_epoch = (END_TS + 86_400 - EPOCH0_TS) // EPOCH_S
    item_seen = np.zeros((max_epoch + 1) * cfg.categories * POOL, dtype=bool)

    def marking(users: Iterator[UserData]) -> Iterator[UserData]:
        for data in users:
            item_seen[data.behaviors["item_id"]] = True
            yield data

    samples, written = stream_users(out / BEHAVIORS_FILE, marking(_iter_users(cfg, progress)))
    sample_schema = pa.schema([*SAMPLE_FIELDS, pa.field("p_recent", pa.float32(), nullable=False)])
    pq.write_table(pa.Table.from_pandas(samples, schema=sample_schema, preserve_index=False), out / SAMPLES_FILE)
    meta: dict[str, Any] = {
        "source": SOURCE,
        "actions": list(ACTIONS),
        "n_users": cfg.users,
        "n_items": int(item_seen.sum()),
        "n_categories": cfg.categories,
        "n_behaviors": written,
        "n_samples": len(samples),
        "order": "user,ts",
        "config": asdict(cfg),
        "generator": {
            "end_ts": END_TS,
            "epoch0_ts": EPOCH0_TS,
            "epoch_s": EPOCH_S,
            "pool": POOL,
            "p_old": P_OLD,
            "n_long": N_LONG,
            "n_short": N_SHORT,
            "p_long_max": P_LONG_MAX,
            "long_decay": LONG_DECAY,
            "p_short": P_SHORT,
            "segment_mean": SEGMENT_MEAN,
            "span_days": list(SPAN_DAYS),
            "b0": B0,
            "b_long": B_LONG,
            "b_short": B_SHORT,
            "quality": QUALITY,
            "recent": RECENT,
            "action_probs": {k: list(v) for k, v in ACTION_PROBS.items()},
            "item_id_rule": "((epoch * n_categories) + category) * pool + k; category = (item_id // pool) % n",
            "split_rule": "per user by sample time: last k=max(1, round(n/10)) test, k before valid, rest train",
            "sample_history_rule": "a sample's history is every behaviour of its user (all have ts < sample ts)",
        },
        "oracle_auc_test": oracle_auc(samples),
        "recent_only_auc_test": recent_only_auc(samples),
        "licence": "generated data, no licence restriction",
    }
    write_meta(out, meta)
    return meta


def auc_of(samples: pd.DataFrame, score: str, split: str | None) -> float | None:
    """AUC of column ``score`` against ``label`` on ``split``'s samples (all when None); None with one class."""
    from sklearn.metrics import roc_auc_score

    part = samples if split is None else samples[samples["split"] == split]
    if part["label"].nunique() < 2:
        return None
    return round(float(roc_auc_score(part["label"], part[score])), 6)


def oracle_auc(samples: pd.DataFrame, split: str | None = "test") -> float | None:
    """AUC of the ground-truth p_true on the samples of ``split`` (all samples when None); None with one class."""
    return auc_of(samples, "p_true", split)


def recent_only_auc(samples: pd.DataFrame, split: str | None = "test") -> float | None:
    """AUC of p_recent, the ground truth as seen from the last RECENT behaviours only (no long-term term)."""
    return auc_of(samples, "p_recent", split)
