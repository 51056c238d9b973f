"""Artifact directories: round trip, content-hash versions, and refusal of tampered, partial or foreign ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models import artifacts
from models.artifacts import ArtifactError, content_version, load, save
from models.ranker import RankerModel
from models.testing import random_batch, tiny, tiny_lookups


def trained_like(variant: str, seed: int = 0) -> RankerModel:
    torch.manual_seed(seed)
    model = RankerModel(tiny(variant))
    with torch.no_grad():  # move every weight away from its initial value, as training would
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model.eval()


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, RankerModel, str]:
    model = trained_like("sim_can")
    curves = tmp_path / "curves.png"
    curves.write_bytes(b"\x89PNG fake image bytes")
    out = tmp_path / "art"
    lookups, index = tiny_lookups(model.config.vector_dim)
    version = save(model, model.config, out, {"auc": 0.75}, extra_files={"curves.png": curves}, lookups=lookups,
                   item_index=index)
    return out, model, version


def test_round_trip_gives_identical_logits(saved: tuple[Path, RankerModel, str]) -> None:
    out, model, version = saved
    art = load(out)
    assert art.version == version and art.manifest["variant"] == "sim_can"
    assert art.config == model.config and art.item_index is not None and not art.model.training
    assert set(art.manifest["files"]) == {
        "model.safetensors", "config.json", "metrics.json", "curves.png", "tables/item_vocab.npy",
        "tables/item_tables.npz", "tables/category_vocab.npy", *(f"item_index/gsu_{n}.npy" for n in
                                                                  ("keys", "queries", "centroids", "cluster_of")),
    }  # fmt: skip
    lookups, _ = tiny_lookups(model.config.vector_dim)
    assert art.lookups.items is not None and art.lookups.categories is not None and lookups.items is not None
    np.testing.assert_array_equal(art.lookups.items.vectors, lookups.items.vectors)
    np.testing.assert_array_equal(art.lookups.items.vocab.known, lookups.items.vocab.known)
    assert json.loads((out / "metrics.json").read_text()) == {"auc": 0.75}
    batch = random_batch(model.config, np.random.default_rng(0))
    with torch.inference_mode():
        torch.testing.assert_close(art.model(batch).logits, model(batch).logits, rtol=0, atol=0)


def test_version_is_a_content_hash(tmp_path: Path) -> None:
    model = trained_like("din")
    v1 = save(model, model.config, tmp_path / "a", {"auc": 0.7})
    v2 = save(model, model.config, tmp_path / "b", {"auc": 0.7})
    v3 = save(model, model.config, tmp_path / "c", {"auc": 0.71})
    assert v1 == v2 != v3
    files = json.loads((tmp_path / "a" / "manifest.json").read_text())["files"]
    assert content_version(files) == v1


def test_soft_search_artifact_carries_its_item_index_and_tables(tmp_path: Path) -> None:
    model = trained_like("sim_soft")
    lookups, index = tiny_lookups(model.config.vector_dim)
    with pytest.raises(ArtifactError, match="item_index"):
        save(model, model.config, tmp_path / "no_index", {}, lookups=lookups)
    with pytest.raises(ArtifactError, match="tables"):
        save(model, model.config, tmp_path / "no_tables", {}, item_index=index)
    save(model, model.config, tmp_path / "art", {}, item_index=index, lookups=lookups)
    art = load(tmp_path / "art")
    assert art.item_index is not None and art.item_index.vocab is not None
    np.testing.assert_array_equal(art.item_index.keys, index.keys)
    (tmp_path / "art" / "item_index" / "gsu_centroids.npy").unlink()
    with pytest.raises(ArtifactError, match=r"gsu_centroids\.npy: missing file"):
        load(tmp_path / "art")
    save(model, model.config, tmp_path / "art2", {}, item_index=index, lookups=lookups)
    (tmp_path / "art2" / "tables" / "item_tables.npz").unlink()
    with pytest.raises(ArtifactError, match=r"item_tables\.npz: missing file"):
        load(tmp_path / "art2")


def test_hashing_models_need_no_tables(tmp_path: Path) -> None:
    model = trained_like("din")
    save(model, model.config, tmp_path / "din", {})
    art = load(tmp_path / "din")
    assert art.item_index is None and art.lookups.items is None


def test_tampered_weights_are_refused(saved: tuple[Path, RankerModel, str]) -> None:
    out, _, _ = saved
    weights = out / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01  # one flipped bit in a weight
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model\.safetensors: sha256 differs"):
        load(out)


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "curves.png", "manifest.json"])
def test_missing_file_is_refused_by_name(saved: tuple[Path, RankerModel, str], name: str) -> None:
    out, _, _ = saved
    (out / name).unlink()
    with pytest.raises(ArtifactError, match=rf"{name.replace('.', '[.]')}: missing"):
        load(out)


def rewrite_manifest(out: Path, **changes: object) -> None:
    """Re-sign the files as they are now (a consistent manifest), then apply ``changes``."""
    files = {
        p.relative_to(out).as_posix(): {"sha256": artifacts._sha256(p), "size": p.stat().st_size}
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }
    manifest = json.loads((out / "manifest.json").read_text())
    manifest.update(files=files, version=content_version(files))
    manifest.update(changes)
    (out / "manifest.json").write_text(json.dumps(manifest))


def test_unknown_format_version_is_refused(saved: tuple[Path, RankerModel, str]) -> None:
    out, _, _ = saved
    rewrite_manifest(out, format_version=99)
    with pytest.raises(ArtifactError, match=r"manifest\.json: format_version=99 is not supported"):
        load(out)


def test_wrong_version_id_is_refused(saved: tuple[Path, RankerModel, str]) -> None:
    out, _, _ = saved
    rewrite_manifest(out, version="0123456789abcdef")
    with pytest.raises(ArtifactError, match="does not match the content hash"):
        load(out)


def test_config_that_does_not_fit_the_weights_is_refused(saved: tuple[Path, RankerModel, str]) -> None:
    out, _, _ = saved
    config = json.loads((out / "config.json").read_text())
    config["item_buckets"] += 7  # consistent manifest, but the embedding tables were saved with fewer rows
    (out / "config.json").write_text(json.dumps(config))
    rewrite_manifest(out)
    with pytest.raises(ArtifactError, match=r"weights do not match config\.json.*embedding|item rows"):
        load(out)


def test_foreign_config_is_refused(saved: tuple[Path, RankerModel, str]) -> None:
    out, _, _ = saved
    config = json.loads((out / "config.json").read_text())
    config["variant"] = "sim_turbo"
    (out / "config.json").write_text(json.dumps(config))
    rewrite_manifest(out)
    with pytest.raises(ArtifactError, match=r"config\.json: not a valid model config.*sim_turbo"):
        load(out)


def test_save_refuses_a_non_empty_directory_unless_asked(saved: tuple[Path, RankerModel, str]) -> None:
    out, model, version = saved
    lookups, index = tiny_lookups(model.config.vector_dim)
    with pytest.raises(ArtifactError, match="not empty"):
        save(model, model.config, out, {"auc": 0.75}, lookups=lookups, item_index=index)
    assert save(model, model.config, out, {"auc": 0.75}, overwrite=True, lookups=lookups,
                item_index=index) != version  # curves.png is gone
    assert not (out / "curves.png").exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []  # no temp dirs left


def test_the_demo_rebuilds_an_artifact_of_an_older_format(saved: tuple[Path, RankerModel, str]) -> None:
    from cli.demo import _artifact_current

    out, _, _ = saved
    assert _artifact_current(out)
    rewrite_manifest(out, format_version=artifacts.FORMAT_VERSION - 1)  # what an earlier build wrote
    assert not _artifact_current(out)
    assert not _artifact_current(out.parent / "nothing-here")
