"""The sample protocols on tiny hand-made frames: split sizes, tie order, no target or future in a history."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.data.samples import DatasetError, load_samples, ml100k_samples, per_user_split_sizes, synthetic_samples


def ml_frame(rows: list[tuple[str, int, int, int, int]]) -> pd.DataFrame:
    """(user, item, category, ts, rating) in original row order -> an ml100k-like behaviours frame."""
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "category_id", "ts", "action"])
    frame["item_id"] = frame["item_id"].astype(np.int64)
    frame["category_id"] = frame["category_id"].astype(np.int32)
    frame["ts"] = frame["ts"].astype(np.int64)
    frame["action"] = frame["action"].astype(np.uint8)
    frame["label"] = (frame["action"] >= 4).astype(np.uint8)
    frame["row"] = np.arange(len(frame), dtype=np.int64)
    return frame


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, (0, 0, 1)), (2, (0, 1, 1)), (3, (1, 1, 1)), (14, (12, 1, 1)), (15, (11, 2, 2)), (25, (21, 2, 2)),
     (35, (27, 4, 4)), (100, (80, 10, 10))],
)  # fmt: skip
def test_per_user_split_sizes_follow_python_round(n: int, expected: tuple[int, int, int]) -> None:
    # round(1.5) == 2, round(2.5) == 2, round(3.5) == 4 (banker's rounding, as the protocol says)
    assert per_user_split_sizes(n) == expected
    assert sum(per_user_split_sizes(n)) == n


def test_ml100k_split_sizes_and_targets() -> None:
    # user "a": 15 ratings -> k = round(1.5) = 2 -> 11 train, 2 valid, 2 test; user "b": 3 ratings -> 1/1/1.
    rows = [("a", 100 + i, i % 3, 1000 + 10 * i, 5 if i % 2 else 2) for i in range(15)]
    rows += [("b", 200 + i, 7, 1005 + 10 * i, 4) for i in range(3)]
    s = ml100k_samples(ml_frame(rows))
    a, b = s.user_ids.index("a"), s.user_ids.index("b")
    assert (s.train.user == a).sum() == 11 and (s.valid.user == a).sum() == 2 and (s.test.user == a).sum() == 2
    assert (s.train.user == b).sum() == 1 and (s.valid.user == b).sum() == 1 and (s.test.user == b).sum() == 1
    # the last two ratings of "a" are its test samples, the two before them validation
    assert sorted(s.test.item[s.test.user == a].tolist()) == [113, 114]
    assert sorted(s.valid.item[s.valid.user == a].tolist()) == [111, 112]
    assert s.test.label[s.test.item == 114].tolist() == [0]  # rating 2 -> negative
    assert s.test.label[s.test.item == 113].tolist() == [1]  # rating 5 -> positive
    assert len(s.train) + len(s.valid) + len(s.test) == 18


def test_ml100k_history_excludes_target_and_future_and_breaks_ties_by_row() -> None:
    # three ratings share ts=50; the original row order (x, y, z) decides their order. A later row has an
    # earlier ts, so (ts, row) order differs from row order.
    rows = [("u", 1, 0, 50, 5), ("u", 2, 0, 50, 3), ("u", 3, 1, 50, 4), ("u", 4, 1, 10, 1)]
    rows += [("u", 10 + i, 2, 100 + i, 4) for i in range(6)]
    s = ml100k_samples(ml_frame(rows))
    hist = s.histories[0]
    assert hist["item_id"][:4].tolist() == [4, 1, 2, 3]  # ts 10 first, then the ts-50 ties in row order
    assert hist["action"][:4].tolist() == [1, 5, 3, 4]  # the rating travels as the action
    for split in (s.train, s.valid, s.test):
        for item, hist_len, ts in zip(split.item, split.hist_len, split.ts, strict=True):
            history = hist[:hist_len]
            assert item not in history["item_id"]  # the target is not in its own history
            assert (history["ts"] <= ts).all()  # nothing from the future
            assert hist["item_id"][hist_len] == item  # the history ends right before the target
    # the sample of item 3 (third of the tie) sees items 4, 1, 2 but not itself
    where = np.flatnonzero(s.train.item == 3)[0]
    assert hist["item_id"][: s.train.hist_len[where]].tolist() == [4, 1, 2]


def test_synthetic_history_is_behaviours_strictly_before_sample_ts() -> None:
    behaviors = pd.DataFrame(
        {"user_id": ["u", "u", "v", "u", "v"], "item_id": [1, 2, 3, 4, 5], "category_id": [0, 0, 1, 1, 1],
         "ts": [10, 20, 20, 30, 40], "action": [1, 1, 1, 1, 1]}
    )  # fmt: skip
    samples = pd.DataFrame(
        {"user_id": ["u", "u", "v", "u"], "item_id": [9, 8, 7, 6], "category_id": [0, 1, 1, 0],
         "ts": [20, 31, 40, 5], "label": [1, 0, 1, 0], "p_true": [0.9, 0.2, 0.8, 0.1],
         "split": ["train", "test", "valid", "train"]}
    )  # fmt: skip
    s = synthetic_samples(behaviors, samples)
    u, v = s.user_ids.index("u"), s.user_ids.index("v")
    train = {int(i): int(h) for i, h in zip(s.train.item, s.train.hist_len, strict=True)}
    assert train == {9: 1, 6: 0}  # ts=20 excludes the behaviour at ts=20 itself; ts=5 has no history
    assert s.test.user.tolist() == [u] and s.test.hist_len.tolist() == [3]
    assert s.valid.user.tolist() == [v] and s.valid.hist_len.tolist() == [1]
    assert s.test.p_true is not None and s.test.p_true.tolist() == pytest.approx([0.2])


def test_load_samples_rejects_bad_directories(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a directory"):
        load_samples(tmp_path / "missing")
    with pytest.raises(DatasetError, match=r"meta\.json"):
        load_samples(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"source": "other"}))
    with pytest.raises(DatasetError, match="source"):
        load_samples(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"source": "ml100k"}))
    with pytest.raises(DatasetError, match=r"behaviors\.parquet"):
        load_samples(tmp_path)
