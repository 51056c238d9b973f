"""MovieLens-100K read from the installed recbole wheel: counts, order, labels, categories, shifted timestamps.

The expectations are recomputed here from the raw files with the csv module, independently of the pandas code.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from cli.main import main
from models.data import movielens
from models.data.movielens import (
    GENRES,
    TS_OFFSET_S,
    UNKNOWN_CATEGORY,
    MovieLensMissing,
    load_ml100k,
    ml100k_dir,
    write_ml100k,
)
from retrieval.events import MIN_TS


@pytest.fixture(scope="module")
def raw() -> tuple[list[list[str]], dict[int, list[str]]]:
    src = ml100k_dir()
    with open(src / "ml-100k.inter", newline="") as fh:
        ratings = list(csv.reader(fh, delimiter="\t"))[1:]
    with open(src / "ml-100k.item", newline="") as fh:
        items = {int(r[0]): r[3].split() for r in list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]}
    return ratings, items


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return load_ml100k()


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ml100k")
    write_ml100k(out)
    return out


def test_counts(frame: pd.DataFrame) -> None:
    assert len(frame) == 100_000
    assert frame["user_id"].nunique() == 943
    assert frame["item_id"].nunique() == 1_682
    assert frame["event_id"].is_unique and frame["row"].is_unique


def test_order_is_ts_then_row(frame: pd.DataFrame, raw: tuple[list[list[str]], dict[int, list[str]]]) -> None:
    ratings, _ = raw
    key = list(zip(frame["ts_original"], frame["row"], strict=True))
    assert key == sorted(key)
    assert (frame["ts_original"].diff().dropna() == 0).sum() > 1_000  # ties are common: row order matters
    # each row still carries its own rating line's values
    for i in (0, 17, 50_000, 99_999):
        r = frame.iloc[i]
        user, item, rating, ts = ratings[int(r["row"])]
        assert (r["user_id"], int(r["item_id"]), int(r["action"]), int(r["ts_original"])) == (
            user,
            int(item),
            int(float(rating)),
            int(float(ts)),
        )


def test_labels_actions_and_shifted_time(
    frame: pd.DataFrame, raw: tuple[list[list[str]], dict[int, list[str]]]
) -> None:
    ratings, _ = raw
    expected_rate = sum(float(r[2]) >= 4 for r in ratings) / len(ratings)
    assert frame["label"].mean() == pytest.approx(expected_rate)
    assert 0.5 < expected_rate < 0.6
    assert ((frame["action"] >= 4).astype(np.uint8) == frame["label"]).all()
    assert set(frame["action"].unique()) == {1, 2, 3, 4, 5}
    assert TS_OFFSET_S % 86_400 == 0
    assert (frame["ts"] == frame["ts_original"] + TS_OFFSET_S).all()
    assert frame["ts"].min() >= MIN_TS and frame["ts"].max() < time.time()


def test_category_is_first_listed_genre(frame: pd.DataFrame, raw: tuple[list[list[str]], dict[int, list[str]]]) -> None:
    _, items = raw
    expected = {i: GENRES.index(g[0]) if g else UNKNOWN_CATEGORY for i, g in items.items()}
    got = frame.groupby("item_id")["category_id"].first().to_dict()
    assert got == {i: expected[i] for i in got}
    assert got[1] == GENRES.index("Animation")  # Toy Story: Animation Children's Comedy
    assert got[2] == GENRES.index("Action")  # GoldenEye: Action Adventure Thriller
    assert frame.groupby("item_id")["category_id"].nunique().max() == 1


def test_written_directory(written: Path, frame: pd.DataFrame) -> None:
    table = pq.read_table(written / "behaviors.parquet")
    types = {f.name: str(f.type) for f in table.schema}
    assert types == {
        "user_id": "string",
        "item_id": "int64",
        "category_id": "int32",
        "ts": "int64",
        "action": "uint8",
        "event_id": "string",
        "label": "uint8",
        "row": "int64",
        "ts_original": "int64",
    }
    assert table.to_pandas().equals(frame)
    meta = json.loads((written / "meta.json").read_text())
    assert meta["source"] == "ml100k" and meta["actions"] == [1, 2, 3, 4, 5]
    assert (meta["n_users"], meta["n_items"], meta["n_behaviors"]) == (943, 1_682, 100_000)
    assert meta["n_categories"] == len(GENRES) and meta["ts_offset_s"] == TS_OFFSET_S


def test_missing_wheel_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(movielens.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MovieLensMissing, match=r"pip install --no-deps recbole==1\.2\.1"):
        ml100k_dir()


def test_cli_missing_wheel_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(movielens.importlib.util, "find_spec", lambda name: None)
    assert main(["data", "ml100k", "--out", str(tmp_path / "d")]) == 2
    assert "recbole==1.2.1" in capsys.readouterr().err
