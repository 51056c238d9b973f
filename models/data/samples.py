"""Training samples from a dataset directory: the evaluation protocols, and splits held as flat arrays.

A dataset directory (written by ``longrank data``) holds ``behaviors.parquet`` (every behaviour event, in global
(ts, row) order) and ``meta.json``; the synthetic one also ``samples.parquet``. This module turns it into
``Samples``: one history array per user (``BEHAVIOR_DTYPE``, oldest first) and three ``Split`` objects. A sample
never owns a copy of its history: it names its user and a history length, and its history is the prefix
``histories[user][:hist_len]``. A batch of samples therefore costs a few slices, whatever the history lengths.

Protocols
---------
MovieLens-100K (per-user, fixed so results compare with other libraries on the same work):

* every rating is a sample: target = the rated item (and its category), label = ``rating >= 4``;
* a user's ratings are ordered by (ts, original row order) — ML-100K ties heavily on timestamps, and the row
  order breaks the ties; the history of the rating at position ``i`` of that order is the user's ratings at
  positions ``0 .. i-1`` (the target itself excluded, nothing later included); a history event carries the
  item, its category and the rating as its action;
* split per user: of a user's ``n`` samples, the last ``k = max(1, round(n / 10))`` (Python ``round``) go to
  test, the ``k`` before them to validation, the rest to train. Every test user thus has a history and has been
  seen in training (a global-time split leaves most test users unseen, and on it attention models do not beat
  mean pooling).

Synthetic lifelong data: the samples and their split come from ``samples.parquet`` (``p_true`` is the ground
truth click probability, so the oracle AUC is computable); the history of a sample is that user's behaviours
with ``ts`` strictly before the sample's ``ts``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from retrieval.events import BEHAVIOR_DTYPE, Behaviors

SPLITS = ("train", "valid", "test")


class DatasetError(ValueError):
    """The dataset directory is missing or malformed (the message names the file and what is wrong)."""


@dataclass(frozen=True)
class Split:
    """Samples of one split as parallel arrays; sample i's history is ``histories[user[i]][:hist_len[i]]``."""

    user: npt.NDArray[np.int32]  # index into Samples.user_ids / Samples.histories
    hist_len: npt.NDArray[np.int64]  # number of the user's behaviours that precede the target
    item: npt.NDArray[np.int64]
    category: npt.NDArray[np.int32]
    ts: npt.NDArray[np.int64]
    label: npt.NDArray[np.uint8]
    p_true: npt.NDArray[np.float32] | None = None  # synthetic only: the ground-truth click probability
    p_clean: npt.NDArray[np.float32] | None = None  # item-interest synthetic: the noise-free truth (the ceiling)
    self_action: npt.NDArray[np.int64] | None = None  # the action of the target's own event where it is counted
    # among the behaviours visible to training (MovieLens train samples), else -1: leave-one-out of global counts

    def __len__(self) -> int:
        return len(self.label)

    def take(self, rows: npt.NDArray[np.intp] | slice) -> Split:
        """The samples at ``rows`` (a shuffled mini-batch, a subset)."""
        return Split(
            user=self.user[rows],
            hist_len=self.hist_len[rows],
            item=self.item[rows],
            category=self.category[rows],
            ts=self.ts[rows],
            label=self.label[rows],
            p_true=None if self.p_true is None else self.p_true[rows],
            p_clean=None if self.p_clean is None else self.p_clean[rows],
            self_action=None if self.self_action is None else self.self_action[rows],
        )


@dataclass(frozen=True)
class Samples:
    """A dataset ready for training: per-user histories and the train/valid/test splits."""

    source: str
    user_ids: list[str]
    histories: list[Behaviors]  # one BEHAVIOR_DTYPE array per user, (ts, row) order
    train: Split
    valid: Split
    test: Split
    meta: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        result: Split = getattr(self, name)
        return result

    def visible_histories(self) -> list[Behaviors]:
        """Each user's behaviours that training may count: the prefix up to the end of the user's last training
        sample's history, including that sample's own event when it is a behaviour (MovieLens: the ratings of the
        train part; synthetic: the whole history). What item tables are fitted on (never validation or test)."""
        end = np.zeros(len(self.histories), dtype=np.int64)
        own = self.train.self_action if self.train.self_action is not None else np.full(len(self.train), -1)
        np.maximum.at(end, self.train.user.astype(np.int64), self.train.hist_len + (own >= 0))
        return [h[: int(e)] for h, e in zip(self.histories, end.tolist(), strict=True)]

    def describe(self) -> dict[str, Any]:
        """Sizes for reports: users, samples per split, positive rate, history length statistics."""
        lengths = np.array([len(h) for h in self.histories], dtype=np.int64)
        return {
            "source": self.source,
            "users": len(self.user_ids),
            "behaviors": int(lengths.sum()),
            "history_len_mean": float(lengths.mean()) if len(lengths) else 0.0,
            "history_len_max": int(lengths.max()) if len(lengths) else 0,
            **{f"{name}_samples": len(self.split(name)) for name in SPLITS},
            "test_positive_rate": float(self.test.label.mean()) if len(self.test) else 0.0,
        }


def per_user_split_sizes(n: int) -> tuple[int, int, int]:
    """(train, valid, test) sizes of a user with ``n`` samples: k = max(1, round(n/10)) to test, k to valid."""
    if n <= 0:
        return 0, 0, 0
    k = max(1, round(n / 10))
    test = min(k, n)
    valid = min(k, n - test)
    return n - test - valid, valid, test


def _group_by_user(frame: pd.DataFrame, order: list[str]) -> tuple[list[str], npt.NDArray[np.intp], list[Behaviors]]:
    """Sort by (user, *order) and cut into one BEHAVIOR_DTYPE array per user.

    Returns the user ids (sorted), the start offset of each user in the sorted frame (plus the end), and the
    histories (views into one contiguous array, so the memory is that of the events themselves).
    """
    frame = frame.sort_values(["user_id", *order], kind="stable")
    users = frame["user_id"].to_numpy()
    records = np.empty(len(frame), dtype=BEHAVIOR_DTYPE)
    records["ts"] = frame["ts"].to_numpy(np.int64)
    records["item_id"] = frame["item_id"].to_numpy(np.int64)
    records["category_id"] = frame["category_id"].to_numpy(np.int32)
    records["action"] = frame["action"].to_numpy(np.uint8)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else np.zeros(0, dtype=np.intp)
    bounds = np.r_[starts, len(users)].astype(np.intp)
    user_ids = [str(users[s]) for s in starts]
    histories = [records[bounds[i] : bounds[i + 1]] for i in range(len(starts))]
    return user_ids, bounds, histories


def _read_parquet(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found (write the dataset with `longrank data ... --out DIR`)")
    frame = pd.read_parquet(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; has {list(frame.columns)}")
    return frame


def read_meta(data_dir: Path) -> dict[str, Any]:
    path = Path(data_dir) / "meta.json"
    if not path.is_file():
        raise DatasetError(f"{path}: file not found (is {data_dir} a dataset directory from `longrank data`?)")
    meta: dict[str, Any] = json.loads(path.read_text())
    return meta


def ml100k_samples(behaviors: pd.DataFrame, meta: dict[str, Any] | None = None) -> Samples:
    """The MovieLens-100K per-user protocol (see the module docstring) on a behaviours frame.

    ``behaviors`` needs user_id, item_id, category_id, ts, action (the rating), label and row (the original row
    order, the tie-breaker on equal ts).
    """
    user_ids, bounds, histories = _group_by_user(behaviors, ["ts", "row"])
    ordered = behaviors.sort_values(["user_id", "ts", "row"], kind="stable")
    labels = ordered["label"].to_numpy(np.uint8)
    n_users = len(user_ids)
    counts = np.diff(bounds)
    user = np.repeat(np.arange(n_users, dtype=np.int32), counts)
    position = np.arange(len(ordered), dtype=np.int64) - np.repeat(bounds[:-1].astype(np.int64), counts)
    # split code per row: 0 train, 1 valid, 2 test, from the per-user sizes.
    sizes = np.array([per_user_split_sizes(int(n)) for n in counts], dtype=np.int64).reshape(-1, 3)
    train_end = np.repeat(sizes[:, 0], counts)
    valid_end = np.repeat(sizes[:, 0] + sizes[:, 1], counts)
    code = np.where(position < train_end, 0, np.where(position < valid_end, 1, 2))
    flat = np.concatenate(histories) if histories else np.empty(0, dtype=BEHAVIOR_DTYPE)

    def make(which: int) -> Split:
        rows = np.flatnonzero(code == which)
        return Split(
            user=user[rows],
            hist_len=position[rows],
            item=flat["item_id"][rows].copy(),
            category=flat["category_id"][rows].copy(),
            ts=flat["ts"][rows].copy(),
            label=labels[rows],
        )

    train = make(0)
    train = replace(train, self_action=_self_actions(histories, train))  # counted in the visible behaviours
    return Samples("ml100k", user_ids, histories, train, make(1), make(2), dict(meta or {}))


def synthetic_samples(
    behaviors: pd.DataFrame, samples: pd.DataFrame, meta: dict[str, Any] | None = None
) -> Samples:
    """Synthetic lifelong data: samples and split from ``samples.parquet``; history = behaviours before ts."""
    behaviors = behaviors.assign(_row=np.arange(len(behaviors), dtype=np.int64))
    user_ids, _, histories = _group_by_user(behaviors, ["ts", "_row"])
    index = {u: i for i, u in enumerate(user_ids)}
    unknown = sorted(set(samples["user_id"].astype(str)) - index.keys())
    if unknown:
        raise DatasetError(f"samples.parquet: {len(unknown)} user(s) without behaviours, e.g. {unknown[:3]}")
    user_all = np.asarray(samples["user_id"].astype(str).map(index), dtype=np.int32)
    ts_all = samples["ts"].to_numpy(np.int64)
    hist_len_all = np.empty(len(samples), dtype=np.int64)
    order = np.argsort(user_all, kind="stable")
    ordered = user_all[order]
    cuts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if len(order) else np.zeros(0, np.intp)
    for start, end in zip(cuts.tolist(), [*cuts[1:].tolist(), len(order)], strict=True):
        rows = order[start:end]
        hist = histories[int(user_all[rows[0]])]
        hist_len_all[rows] = np.searchsorted(hist["ts"], ts_all[rows], side="left")
    split_col = samples["split"].astype(str).to_numpy()
    bad = sorted(set(split_col) - set(SPLITS))
    if bad:
        raise DatasetError(f"samples.parquet: split must be one of {SPLITS}, found {bad}")

    def make(name: str) -> Split:
        rows = np.flatnonzero(split_col == name)
        rows = rows[np.lexsort((ts_all[rows], user_all[rows]))]
        return Split(
            user=user_all[rows],
            hist_len=hist_len_all[rows],
            item=samples["item_id"].to_numpy(np.int64)[rows],
            category=samples["category_id"].to_numpy(np.int32)[rows],
            ts=ts_all[rows],
            label=samples["label"].to_numpy(np.uint8)[rows],
            p_true=samples["p_true"].to_numpy(np.float32)[rows] if "p_true" in samples.columns else None,
            p_clean=samples["p_clean"].to_numpy(np.float32)[rows] if "p_clean" in samples.columns else None,
        )

    return Samples("synthetic", user_ids, histories, make("train"), make("valid"), make("test"), dict(meta or {}))


def _self_actions(histories: list[Behaviors], split: Split) -> npt.NDArray[np.int64]:
    """Per sample, the action of the behaviour at position hist_len when that behaviour is the sample's own event
    (same item and time), else -1."""
    out = np.full(len(split), -1, dtype=np.int64)
    for i, (u, pos) in enumerate(zip(split.user.tolist(), split.hist_len.tolist(), strict=True)):
        history = histories[u]
        if pos < len(history) and history["item_id"][pos] == split.item[i] and history["ts"][pos] == split.ts[i]:
            out[i] = int(history["action"][pos])
    return out


BEHAVIOR_COLUMNS = ["user_id", "item_id", "category_id", "ts", "action"]


def load_samples(data_dir: str | Path) -> Samples:
    """Read a dataset directory and apply its protocol (chosen by ``meta.json``'s ``source``)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetError(f"--data {data_dir}: not a directory (write one with `longrank data ml100k --out DIR`)")
    meta = read_meta(data_dir)
    source = str(meta.get("source", ""))
    if source == "ml100k":
        behaviors = _read_parquet(data_dir / "behaviors.parquet", [*BEHAVIOR_COLUMNS, "label", "row"])
        return ml100k_samples(behaviors, meta)
    if source == "synthetic":
        behaviors = _read_parquet(data_dir / "behaviors.parquet", BEHAVIOR_COLUMNS)
        samples = _read_parquet(
            data_dir / "samples.parquet", ["user_id", "item_id", "category_id", "ts", "label", "split"]
        )
        return synthetic_samples(behaviors, samples, meta)
    raise DatasetError(f"{data_dir / 'meta.json'}: source must be 'ml100k' or 'synthetic', got {source!r}")
