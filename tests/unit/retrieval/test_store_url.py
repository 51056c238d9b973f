"""open_store(url): schemes, sqlite paths, query options, and clear errors naming the bad option."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from retrieval.errors import InvalidStoreURL
from retrieval.store.base import StoreOptions
from retrieval.store.factory import open_store, options_from_query
from retrieval.store.memory import MemoryStore
from retrieval.store.sqlite import SqliteStore


def test_memory_url() -> None:
    store = open_store("memory://")
    try:
        assert isinstance(store, MemoryStore)
        assert store.options == StoreOptions()
    finally:
        store.close()


def test_sqlite_relative_path_is_relative_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///var/nested/b.db")
    try:
        assert isinstance(store, SqliteStore)
        assert store.path == Path("var/nested/b.db")
        assert (tmp_path / "var" / "nested" / "b.db").is_file()  # parent directories created
    finally:
        store.close()


def test_sqlite_absolute_path(tmp_path: Path) -> None:
    target = tmp_path / "abs" / "b.db"
    store = open_store(f"sqlite:///{target}")  # sqlite:////tmp/... -> /tmp/...
    try:
        assert isinstance(store, SqliteStore) and store.path == target and os.path.isabs(store.path)
        assert target.is_file()
    finally:
        store.close()


def test_query_options_override_code_options(tmp_path: Path) -> None:
    base = StoreOptions(max_behaviors=10, per_category=7)
    url = f"sqlite:///{tmp_path}/b.db?max_behaviors=200000&dedupe_window_s=60&command_timeout_s=2.5&actions=0,1,9"
    store = open_store(url, base)
    try:
        assert store.options == StoreOptions(
            max_behaviors=200_000,
            per_category=7,
            dedupe_window_s=60,
            command_timeout_s=2.5,
            actions=frozenset({0, 1, 9}),
        )
    finally:
        store.close()
    memory = open_store("memory://?per_category=3&key_prefix=abc")
    assert (memory.options.per_category, memory.options.key_prefix) == (3, "abc")


@pytest.mark.parametrize(
    "url",
    ["ftp://host/x", "postgres://db/x", "nothing-at-all", "SQLITE2:///x.db"],
)
def test_unknown_scheme(url: str) -> None:
    with pytest.raises(InvalidStoreURL, match="unknown scheme"):
        open_store(url)


@pytest.mark.parametrize("url", ["sqlite://relative.db", "sqlite:///", "sqlite:///:memory:"])
def test_sqlite_url_without_a_file_path(url: str) -> None:
    with pytest.raises(InvalidStoreURL, match=r"sqlite:///relative/or/absolute/path\.db"):
        open_store(url)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("max_behaviors=lots", "max_behaviors='lots' must be a number"),
        ("max_behaviors=0", "max_behaviors=0 must be >= 1"),
        ("per_category=-3", "per_category=-3 must be >= 1"),
        ("dedupe_window_s=0", "dedupe_window_s=0 must be >= 1"),
        ("dedupe_window_s=1.5", "dedupe_window_s='1.5' must be a number"),
        ("command_timeout_s=0", "command_timeout_s=0.0 must be a finite number > 0"),
        ("connect_timeout_s=nan", "connect_timeout_s=nan must be a finite number > 0"),
        ("actions=0,x", "actions='0,x' must be comma-separated integers"),
        ("actions=0,256", "actions=[0, 256] must be a non-empty set of integers in [0, 255]"),
        ("colour=blue", "unknown store option 'colour'"),
    ],
)
def test_bad_option_values_name_the_option(query: str, named: str) -> None:
    with pytest.raises(InvalidStoreURL) as info:
        open_store(f"memory://?{query}")
    assert named in str(info.value)


def test_options_from_query_keeps_the_base_for_missing_keys() -> None:
    base = StoreOptions(per_category=9, key_prefix="p")
    assert options_from_query("", base) == base
    assert options_from_query("max_behaviors=5", base) == StoreOptions(max_behaviors=5, per_category=9, key_prefix="p")
