"""`longrank ingest` end to end: CSV and Parquet into real stores (memory, sqlite, Redis when its backend exists),
bad rows with their line numbers, --skip-invalid accounting, duplicates on re-ingest, dataset directories."""

from __future__ import annotations

import importlib.util
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli.main import main
from retrieval.ingest import IngestAborted, IngestError, ingest_file
from retrieval.store.base import StoreOptions
from retrieval.store.factory import open_store

TS0 = 1_700_000_000
HAS_REDIS_STORE = importlib.util.find_spec("retrieval.store.redis") is not None


def events_frame(n: int = 60, users: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "user_id": [f"user-{i % users}" for i in range(n)],
            "item_id": rng.integers(0, 1_000, n).astype(np.int64),
            "category_id": rng.integers(0, 20, n).astype(np.int32),
            "ts": (TS0 + rng.permutation(n) * 10).astype(np.int64),  # arrival order is not time order
            "action": rng.integers(0, 4, n).astype(np.uint8),
            "event_id": [f"e{i}" for i in range(n)],
            "extra": "ignored",
        }
    )


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["ingest", *args, "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str) -> Iterator[str]:
    kind = request.param
    if kind == "memory":
        yield "memory://"
    elif kind == "sqlite":
        yield f"sqlite:///{tmp_path}/b.db"
    else:
        if not HAS_REDIS_STORE:
            pytest.skip("retrieval.store.redis is not in this build yet")
        import redis

        prefix = f"test-ingest-{uuid.uuid4().hex[:8]}"
        yield f"{redis_url}?key_prefix={prefix}"
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_file_lands_in_the_store_in_time_order(tmp_path: Path, store_url: str, fmt: str) -> None:
    frame = events_frame()
    path = tmp_path / f"events.{fmt}"
    frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path, index=False)
    store = open_store(store_url)
    try:
        stats = ingest_file(path, store, batch_size=7, progress=False)
        assert (stats.read, stats.accepted, stats.duplicates, stats.skipped) == (60, 60, 0, 0)
        assert stats.batches == 9  # ceil(60 / 7)
        for user, part in frame.groupby("user_id"):
            got = store.read(str(user), full=True).full
            assert got is not None
            want = part.sort_values("ts")
            assert got["ts"].tolist() == want["ts"].tolist()
            assert got["item_id"].tolist() == want["item_id"].tolist()
            assert got["action"].tolist() == want["action"].tolist()
        again = ingest_file(path, store, batch_size=25, progress=False)
        assert (again.read, again.accepted, again.duplicates, again.skipped) == (60, 0, 60, 0)
    finally:
        store.close()


def test_cli_parquet_into_sqlite_counts_duplicates_on_reingest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "events.parquet"
    events_frame().to_parquet(path, index=False)
    url = f"sqlite:///{tmp_path}/var/b.db"  # a missing parent directory is created
    code, out, _ = run_cli(capsys, str(path), "--store", url, "--json")
    assert code == 0 and json.loads(out)["accepted"] == 60
    code, out, _ = run_cli(capsys, str(path), "--store", url, "--json", "--batch-size", "16")
    summary = json.loads(out)
    assert code == 0 and (summary["read"], summary["accepted"], summary["duplicates"]) == (60, 0, 60)
    store = open_store(url)
    assert sum(store.length(f"user-{i}") for i in range(4)) == 60
    store.close()


def test_store_url_defaults_to_env(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.csv"
    events_frame(10, 2).to_csv(path, index=False)
    url = f"sqlite:///{tmp_path}/env.db"
    monkeypatch.setenv("LONGRANK_STORE_URL", url)
    code, out, _ = run_cli(capsys, str(path))
    assert code == 0 and url in out
    store = open_store(url)
    assert store.length("user-0") + store.length("user-1") == 10
    store.close()


def test_bad_csv_row_aborts_with_its_line_number(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = events_frame(12, 1).astype({"ts": object, "item_id": object})
    frame.loc[5, "ts"] = 123  # data row 5 -> line 7 (header is line 1)
    frame.loc[9, "item_id"] = "abc"
    path = tmp_path / "events.csv"
    frame.to_csv(path, index=False)
    url = f"sqlite:///{tmp_path}/b.db"
    code, _, err = run_cli(capsys, str(path), "--store", url, "--batch-size", "4")
    assert code == 1
    assert "line 7" in err and "ts=123" in err and "2000-01-01" in err and "--skip-invalid" in err
    store = open_store(url)
    assert store.length("user-0") == 5  # everything before the bad line is stored, nothing after
    store.close()


def test_skip_invalid_counts_and_lists_bad_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = events_frame(30, 3).astype({"ts": object, "item_id": object, "user_id": object})
    frame.loc[2, "item_id"] = "abc"  # line 4: not an integer
    frame.loc[11, "user_id"] = "bad user!"  # line 13: id rule
    frame.loc[20, "ts"] = 12.5  # line 22: not an integer
    frame.loc[21, "action"] = 9  # line 23: not an allowed action
    path = tmp_path / "events.csv"
    frame.to_csv(path, index=False)
    code, out, err = run_cli(capsys, str(path), "--store", "memory://", "--skip-invalid", "--json", "--batch-size", "8")
    summary = json.loads(out)
    assert code == 0
    assert (summary["read"], summary["accepted"], summary["duplicates"], summary["skipped"]) == (30, 26, 0, 4)
    for line, fld in (("line 4", "item_id='abc'"), ("line 13", "user_id='bad user!'"), ("line 22", "ts='12.5'"),
                      ("line 23", "action=9")):  # fmt: skip
        assert line in err and fld in err, (line, fld, err)


def test_bad_parquet_row_is_named_by_row_number(tmp_path: Path) -> None:
    frame = events_frame(10, 2)
    frame.loc[4, "category_id"] = -1
    path = tmp_path / "events.parquet"
    frame.to_parquet(path, index=False)
    store = open_store("memory://")
    with pytest.raises(IngestAborted) as info:
        ingest_file(path, store, progress=False)
    assert str(info.value).startswith("row 4: category_id=-1")
    assert info.value.stats.read == info.value.stats.accepted == 4


def test_missing_column_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "events.csv"
    events_frame().drop(columns=["category_id"]).to_csv(path, index=False)
    code, _, err = run_cli(capsys, str(path), "--store", "memory://")
    assert code == 2 and "missing required column(s) category_id" in err
    with pytest.raises(IngestError, match="unknown format"):
        ingest_file(_touch(tmp_path / "events.json"), open_store("memory://"))


def _touch(path: Path) -> Path:
    path.write_text("{}")
    return path


def test_sibling_meta_json_sets_the_allowed_actions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = events_frame(20, 2)
    frame["action"] = np.uint8(5)
    path = tmp_path / "events.parquet"
    frame.to_parquet(path, index=False)
    code, _, err = run_cli(capsys, str(path), "--store", "memory://")
    assert code == 1 and "action=5" in err  # default actions 0..3
    (tmp_path / "meta.json").write_text(json.dumps({"actions": [1, 2, 3, 4, 5]}))
    code, out, _ = run_cli(capsys, str(path), "--store", "memory://", "--json")
    assert code == 0 and json.loads(out)["accepted"] == 20
    code, _, err = run_cli(capsys, str(path), "--store", "memory://", "--actions", "0,x")
    assert code == 2 and "--actions" in err


def test_ml100k_directory_ingests_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from models.data.movielens import write_ml100k

    write_ml100k(tmp_path / "ml")
    code, out, _ = run_cli(capsys, str(tmp_path / "ml"), "--store", "memory://", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["read"] == summary["accepted"] == 100_000


def test_synthetic_directory_ingests_whole(tmp_path: Path) -> None:
    from models.data.synthetic import SyntheticConfig, write_synthetic

    meta = write_synthetic(tmp_path / "syn", SyntheticConfig(users=5, length=400, seed=1), progress=False)
    store = open_store("memory://", StoreOptions(actions=frozenset(meta["actions"])))
    stats = ingest_file(tmp_path / "syn", store, progress=False)
    assert stats.read == stats.accepted == meta["n_behaviors"] == 2_000
    assert store.length("u000003") == 400
