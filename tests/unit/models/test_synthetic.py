"""The synthetic lifelong generator: determinism, file layout, time order, and that the ground truth has the
promised shape (long-term evidence far back, invisible in the recent window, recoverable from the whole history)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from cli.main import main
from models.data.samples import load_samples
from models.data.synthetic import (
    END_TS,
    POOL,
    RECENT,
    SyntheticConfig,
    generate_user,
    ground_truth,
    oracle_auc,
    recent_only_auc,
    write_synthetic,
)
from retrieval.events import MIN_TS

SMALL = SyntheticConfig(users=12, length=900, min_length=300, categories=40, samples_per_user=10, seed=3)


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("syn")
    write_synthetic(out, SMALL, progress=False)
    return out


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path, small_dir: Path) -> None:
    write_synthetic(tmp_path / "again", SMALL, progress=False)
    other = SyntheticConfig(**{**SMALL.__dict__, "seed": 4})
    write_synthetic(tmp_path / "other", other, progress=False)
    for name in ("behaviors.parquet", "samples.parquet", "meta.json"):
        assert (tmp_path / "again" / name).read_bytes() == (small_dir / name).read_bytes(), name
    first = pq.read_table(small_dir / "behaviors.parquet")
    assert not pq.read_table(tmp_path / "other" / "behaviors.parquet").equals(first)
    assert not pq.read_table(tmp_path / "other" / "samples.parquet").equals(
        pq.read_table(small_dir / "samples.parquet")
    )


def test_layout_types_and_meta(small_dir: Path) -> None:
    beh = pq.read_table(small_dir / "behaviors.parquet")
    types = {f.name: str(f.type) for f in beh.schema}
    assert types == {
        "user_id": "string",
        "item_id": "int64",
        "category_id": "int32",
        "ts": "int64",
        "action": "uint8",
        "event_id": "string",
    }
    frame = beh.to_pandas()
    meta = json.loads((small_dir / "meta.json").read_text())
    assert meta["source"] == "synthetic" and meta["actions"] == [0, 1, 2, 3]
    assert meta["n_behaviors"] == len(frame) and meta["n_users"] == frame["user_id"].nunique() == SMALL.users
    assert meta["n_items"] == frame["item_id"].nunique()
    assert frame["event_id"].is_unique
    assert set(frame["action"].unique()) <= {0, 1, 2, 3}
    assert frame["category_id"].between(0, SMALL.categories - 1).all()
    # an item's category is a function of its id
    assert ((frame["item_id"] // POOL) % SMALL.categories == frame["category_id"]).all()
    lengths = frame.groupby("user_id").size()
    assert lengths.between(300, 900).all() and lengths.nunique() > 1


def test_time_order_and_range(small_dir: Path) -> None:
    frame = pd.read_parquet(small_dir / "behaviors.parquet")
    samples = pd.read_parquet(small_dir / "samples.parquet")
    assert frame["ts"].min() >= MIN_TS and frame["ts"].max() < END_TS
    for _user, ts in frame.groupby("user_id", sort=False)["ts"]:
        assert (np.diff(ts.to_numpy()) > 0).all()  # strictly increasing within a user
    # each user's rows are contiguous (meta order "user,ts")
    users = frame["user_id"].to_numpy()
    assert (users[1:] != users[:-1]).sum() == SMALL.users - 1
    last = frame.groupby("user_id")["ts"].max()
    assert (samples["ts"].to_numpy() > last.loc[samples["user_id"]].to_numpy()).all()
    span_days = (frame.groupby("user_id")["ts"].max() - frame.groupby("user_id")["ts"].min()) / 86_400
    assert span_days.between(300, 3 * 365 + 1).all()


def test_samples_split_per_user_and_labels(small_dir: Path) -> None:
    samples = pd.read_parquet(small_dir / "samples.parquet")
    assert len(samples) == SMALL.users * SMALL.samples_per_user
    for _user, part in samples.groupby("user_id"):
        assert part["split"].tolist() == ["train"] * 8 + ["valid"] + ["test"]  # k = round(10 / 10) = 1
        assert (np.diff(part["ts"].to_numpy()) >= 0).all()
    assert samples["p_true"].between(0, 1).all() and set(samples["label"].unique()) <= {0, 1}
    # the dataset loads with the shared sample builder; every sample sees its user's whole history
    loaded = load_samples(small_dir)
    assert len(loaded.test.label) == SMALL.users
    lengths = {u: len(h) for u, h in zip(loaded.user_ids, loaded.histories, strict=True)}
    assert all(
        int(h) == lengths[loaded.user_ids[u]] for u, h in zip(loaded.test.user, loaded.test.hist_len, strict=True)
    )


def test_long_term_evidence_is_far_back_and_p_true_follows_the_formula() -> None:
    cfg = SyntheticConfig(users=30, length=3000, categories=100, samples_per_user=20, seed=7)
    early, recent = [], []
    for u in range(cfg.users):
        data = generate_user(cfg, u)
        cats = data.behaviors["category_id"]
        in_long = np.isin(cats, data.long_cats)
        early.append(in_long[: len(cats) // 5].mean())
        recent.append(in_long[-RECENT:].mean())
        assert not np.isin(data.short_cats, data.long_cats).any()
        s = data.samples
        expected = ground_truth(s["category_id"].astype(np.int64), s["item_id"], data.long_cats, data.short_cats, 7)
        np.testing.assert_allclose(s["p_true"], expected, rtol=1e-6)
        assert np.isin(data.short_cats, cats[-RECENT:]).all()  # the current short-term interests are visible
        # item ids grow with time (new items keep arriving)
        items = data.behaviors["item_id"]
        assert items[-len(items) // 10 :].mean() > items[: len(items) // 10].mean()
    assert np.mean(early) > 0.4
    assert np.mean(recent) < 0.05  # long-term interests barely show in the last RECENT behaviours


def test_oracle_beats_recent_only_and_labels_follow_p_true(tmp_path: Path) -> None:
    cfg = SyntheticConfig(users=400, length=300, categories=100, samples_per_user=20, seed=11)
    meta = write_synthetic(tmp_path, cfg, progress=False)
    samples = pd.read_parquet(tmp_path / "samples.parquet")
    oracle, recent = oracle_auc(samples, None), recent_only_auc(samples, None)
    assert oracle is not None and recent is not None
    assert oracle > recent + 0.1
    assert meta["oracle_auc_test"] == oracle_auc(samples)
    assert abs(samples["label"].mean() - samples["p_true"].mean()) < 0.03


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"users": 0}, "users"),
        ({"length": 10, "min_length": 11}, "min_length"),
        ({"categories": 3}, "categories"),
        ({"samples_per_user": 2}, "samples_per_user"),
    ],
)
def test_bad_parameters_name_the_field(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SyntheticConfig(**kwargs)  # type: ignore[arg-type]


def test_cli_writes_a_dataset_and_refuses_bad_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "d"
    assert main(["data", "synthetic", "--out", str(out), "--users", "3", "--length", "200", "--no-progress"]) == 0
    assert json.loads((out / "meta.json").read_text())["n_behaviors"] == 600
    code = main(["data", "synthetic", "--out", str(out), "--length", "10", "--min-length", "20", "--no-progress"])
    assert code == 2
    assert "min_length=20" in capsys.readouterr().err
