"""ItemIndex: k-means build with inner-product assignment, vector lookups by hashed bucket, save/load checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval.hashing import bucket
from retrieval.item_index import CLUSTER_OF_FILE, FILES, KEYS_FILE, QUERIES_FILE, ItemIndex, ItemIndexError


def _keys(n_buckets: int = 400, d: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_buckets, d)).astype(np.float32)


@pytest.fixture(scope="module")
def index() -> ItemIndex:
    keys = _keys()
    queries = keys[::-1].copy()
    return ItemIndex.build(keys, queries, n_clusters=10, seed=3)


def test_build_assigns_every_bucket_to_its_best_centroid_by_inner_product(index: ItemIndex) -> None:
    assert index.centroids.shape == (10, 8)
    assert index.cluster_of_bucket.shape == (400,)
    best = np.argmax(index.keys @ index.centroids.T, axis=1)
    assert np.array_equal(index.cluster_of_bucket, best)
    assert len(np.unique(index.cluster_of_bucket[1:])) > 1


def test_too_few_points_get_fewer_clusters() -> None:
    index = ItemIndex.build(_keys(100), n_clusters=16, seed=0)  # Faiss wants >= 39 points per centroid
    assert index.n_clusters == 2


def test_lookups_go_through_the_item_hash(index: ItemIndex) -> None:
    ids = np.array([0, 5, 123_456_789_012, 2**62])
    b = bucket(ids, index.n_buckets)
    assert np.array_equal(index.key_vectors(ids), index.keys[b])
    assert np.array_equal(index.query_vectors(ids), index.queries[b])
    assert np.array_equal(index.cluster_of(ids), index.cluster_of_bucket[b])
    assert not np.array_equal(index.key_vectors(ids), index.query_vectors(ids))


def test_queries_default_to_keys() -> None:
    keys = _keys(n_buckets=50, d=4)
    built = ItemIndex.build(keys, None, n_clusters=3, seed=0)
    assert np.array_equal(built.queries, keys)


def test_build_refuses_bad_arguments() -> None:
    keys = _keys(n_buckets=50, d=4)
    with pytest.raises(ItemIndexError, match="n_clusters=50"):
        ItemIndex.build(keys, None, n_clusters=50, seed=0)
    with pytest.raises(ItemIndexError, match="queries has shape"):
        ItemIndex.build(keys, keys[:, :3], n_clusters=3, seed=0)
    bad = keys.copy()
    bad[7, 1] = np.nan
    with pytest.raises(ItemIndexError, match="finite"):
        ItemIndex.build(bad, None, n_clusters=3, seed=0)


def test_save_load_round_trip(index: ItemIndex, tmp_path: Path) -> None:
    paths = index.save(tmp_path / "gsu")
    assert sorted(p.name for p in paths) == sorted(FILES)
    loaded = ItemIndex.load(tmp_path / "gsu")
    for name in ("keys", "queries", "centroids", "cluster_of_bucket"):
        assert np.array_equal(getattr(loaded, name), getattr(index, name)), name
    assert loaded.quantizer.ntotal == index.n_clusters


def test_load_names_a_missing_file(index: ItemIndex, tmp_path: Path) -> None:
    index.save(tmp_path)
    (tmp_path / QUERIES_FILE).unlink()
    with pytest.raises(ItemIndexError, match=rf"{QUERIES_FILE}: missing"):
        ItemIndex.load(tmp_path)


def test_load_names_a_corrupted_file(index: ItemIndex, tmp_path: Path) -> None:
    index.save(tmp_path)
    (tmp_path / KEYS_FILE).write_bytes(b"\x93NUMPY garbage that is not an array")
    with pytest.raises(ItemIndexError, match=rf"{KEYS_FILE}: unreadable"):
        ItemIndex.load(tmp_path)


def test_load_refuses_pickled_objects(index: ItemIndex, tmp_path: Path) -> None:
    index.save(tmp_path)
    np.save(tmp_path / KEYS_FILE, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ItemIndexError, match=KEYS_FILE):
        ItemIndex.load(tmp_path)


def test_load_checks_shapes_and_ranges(index: ItemIndex, tmp_path: Path) -> None:
    index.save(tmp_path)
    np.save(tmp_path / QUERIES_FILE, index.queries[:, :5])
    with pytest.raises(ItemIndexError, match=QUERIES_FILE):
        ItemIndex.load(tmp_path)
    index.save(tmp_path)
    wrong = index.cluster_of_bucket.copy()
    wrong[3] = index.n_clusters
    np.save(tmp_path / CLUSTER_OF_FILE, wrong)
    with pytest.raises(ItemIndexError, match=rf"{CLUSTER_OF_FILE}.*\[0, 10\)"):
        ItemIndex.load(tmp_path)


def test_probe_gives_the_quantizers_nearest_clusters_best_first(index: ItemIndex) -> None:
    queries = np.random.default_rng(5).standard_normal((30, 8)).astype(np.float32)
    for nprobe in (1, 5, 10):
        probes = index.probe(queries, nprobe)
        _, expected = index.quantizer.search(queries, nprobe)
        assert np.array_equal(probes, expected)
    with pytest.raises(ValueError, match="nprobe=13"):
        index.probe(queries, 13)
