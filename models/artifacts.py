"""Versioned artifact directories: everything serving needs to rebuild and trust one trained model.

Layout::

    model.safetensors        weights (state_dict; no pickle)
    config.json              ModelConfig.to_dict(): the model is rebuilt from this alone
    metrics.json             evaluation results and training facts (free-form JSON object)
    tables/item_vocab.npy    vocabulary models (config.vocabulary): the item tables (retrieval.item_tables) ...
    tables/item_tables.npz   ... global counts, item graph, item vectors ...
    tables/category_vocab.npy ... and the category vocabulary (sorted known ids)
    item_index/gsu_*.npy     soft and hybrid search: retrieval.item_index.ItemIndex.save() over the item vectors
    dgu.safetensors          optional: AGE's Dynamic Gating Unit weights (models/age.py) ...
    dgu.json                 ... and its sizes {"in_dim", "hidden"}; an artifact without them loads with dgu=None
    <extra files>            e.g. curves.png, copied as given
    manifest.json            {"format_version", "version", "variant", "created", "files": {path: {sha256, size}}}

``version`` is a content hash: sha256 over the sorted "path sha256" lines of the manifest's files (first 16 hex
digits), so identical content gives the identical version whatever the time or directory. ``load`` verifies every
listed file (present, size, sha256), the version, the format version, and that config.json builds a model whose
parameter names and shapes are exactly those of the weights; any failure raises ``ArtifactError`` naming the file
and the problem. Files in the directory that the manifest does not list are ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from models.age import DynamicGatingUnit
from models.config import ConfigError, ModelConfig
from models.features import NO_LOOKUPS, Lookups
from models.ranker import RankerModel
from retrieval.item_index import FILES as INDEX_FILES
from retrieval.item_index import ItemIndex, ItemIndexError
from retrieval.item_tables import TABLES_FILE, VOCAB_FILE, ItemTables, ItemTablesError
from retrieval.vocabulary import Vocabulary, VocabularyError

FORMAT_VERSION = 3  # 3: the statistics' quantile encoding; 2: item tables, vocabularies, statistics, hybrid search;
#                    1: hashed ids, trained soft GSU
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
MANIFEST_FILE = "manifest.json"
ITEM_INDEX_DIR = "item_index"
DGU_WEIGHTS_FILE = "dgu.safetensors"
DGU_CONFIG_FILE = "dgu.json"
TABLES_DIR = "tables"
CATEGORY_VOCAB_FILE = "category_vocab.npy"
TABLE_FILES = (VOCAB_FILE, TABLES_FILE, CATEGORY_VOCAB_FILE)
REQUIRED_FILES = (WEIGHTS_FILE, CONFIG_FILE, METRICS_FILE)


class ArtifactError(Exception):
    """An artifact that cannot be written or trusted; the message names the file and the problem."""


class Artifact(NamedTuple):
    model: RankerModel  # in eval mode
    config: ModelConfig
    item_index: ItemIndex | None
    manifest: dict[str, Any]
    dgu: DynamicGatingUnit | None = None  # AGE's gate, when the artifact has one (eval mode)
    lookups: Lookups = NO_LOOKUPS  # vocabularies and item tables (vocabulary models)

    @property
    def version(self) -> str:
        return str(self.manifest["version"])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_version(files: Mapping[str, Mapping[str, Any]]) -> str:
    """The version id: a hash over the (path, sha256) pairs of the artifact's files."""
    lines = "".join(f"{path} {files[path]['sha256']}\n" for path in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def save(
    model: RankerModel,
    config: ModelConfig,
    out_dir: str | Path,
    metrics: Mapping[str, Any] | None = None,
    item_index: ItemIndex | None = None,
    extra_files: Mapping[str, str | Path] | None = None,
    *,
    overwrite: bool = False,
    dgu: DynamicGatingUnit | None = None,
    lookups: Lookups = NO_LOOKUPS,
) -> str:
    """Write the artifact into ``out_dir`` (atomically: a sibling temp dir renamed into place) and return its
    version. ``extra_files`` maps a file name inside the artifact to a source path. Soft and hybrid search need
    the ``item_index``, other configs must not be given one; vocabulary configs need their ``lookups``."""
    out = Path(out_dir)
    if config.to_dict() != model.config.to_dict():
        raise ArtifactError(f"{CONFIG_FILE}: the config given differs from the model's own config")
    searches = config.gsu in ("soft", "hybrid")
    if searches and item_index is None:
        raise ArtifactError(f"{ITEM_INDEX_DIR}/: gsu={config.gsu!r} needs the item index over the item vectors")
    if not searches and item_index is not None:
        raise ArtifactError(f"{ITEM_INDEX_DIR}/: an item index only belongs to soft/hybrid search (gsu={config.gsu!r})")
    try:
        lookups.check(config)
    except ValueError as exc:
        raise ArtifactError(f"{TABLES_DIR}/: {exc}") from exc
    if dgu is not None and dgu.in_dim != config.behavior_dim:
        raise ArtifactError(f"{DGU_CONFIG_FILE}: DGU in_dim={dgu.in_dim} differs from the model's candidate "
                            f"embedding size {config.behavior_dim}")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ArtifactError(f"{out}: directory exists and is not empty (pass overwrite=True to replace it)")
    extras = {name: Path(src) for name, src in (extra_files or {}).items()}
    reserved = {*REQUIRED_FILES, MANIFEST_FILE, ITEM_INDEX_DIR, DGU_WEIGHTS_FILE, DGU_CONFIG_FILE}
    for name, src in extras.items():
        if name in reserved or "/" in name or name.startswith("."):
            raise ArtifactError(f"{name}: extra file name is reserved or not a plain file name")
        if not src.is_file():
            raise ArtifactError(f"{src}: extra file {name!r} does not exist")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format_version": str(FORMAT_VERSION)})
        (tmp / CONFIG_FILE).write_text(config.to_json())
        (tmp / METRICS_FILE).write_text(json.dumps(dict(metrics or {}), indent=2, sort_keys=True, default=float))
        if item_index is not None:
            item_index.save(tmp / ITEM_INDEX_DIR)
        if config.vocabulary:
            assert lookups.items is not None and lookups.categories is not None
            lookups.items.save(tmp / TABLES_DIR)
            lookups.categories.save(tmp / TABLES_DIR / CATEGORY_VOCAB_FILE)
        if dgu is not None:
            dgu_state = {k: v.detach().contiguous().clone() for k, v in dgu.state_dict().items()}
            save_file(dgu_state, str(tmp / DGU_WEIGHTS_FILE))
            (tmp / DGU_CONFIG_FILE).write_text(json.dumps(dgu.config(), sort_keys=True))
        for name, src in extras.items():
            shutil.copyfile(src, tmp / name)
        files = {
            path.relative_to(tmp).as_posix(): {"sha256": _sha256(path), "size": path.stat().st_size}
            for path in sorted(tmp.rglob("*"))
            if path.is_file()
        }
        version = content_version(files)
        manifest = {
            "format_version": FORMAT_VERSION,
            "version": version,
            "variant": config.variant,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": files,
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return version


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest, checked for format version and shape, and every listed file verified (size and sha256)."""
    base = Path(directory)
    path = base / MANIFEST_FILE
    if not base.is_dir():
        raise ArtifactError(f"{base}: artifact directory does not exist")
    if not path.is_file():
        raise ArtifactError(f"{path}: missing manifest")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: unreadable JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path}: must be a JSON object")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: format_version={manifest.get('format_version')!r} is not supported (this build reads "
            f"{FORMAT_VERSION})"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("sha256"), str) and isinstance(v.get("size"), int)
        for v in files.values()
    ):
        raise ArtifactError(f"{path}: 'files' must map each path to {{sha256, size}}")
    for name in REQUIRED_FILES:
        if name not in files:
            raise ArtifactError(f"{base / name}: required file is not listed in {MANIFEST_FILE}")
    for rel, entry in sorted(files.items()):
        file = base / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise ArtifactError(f"{path}: listed path {rel!r} leaves the artifact directory")
        if not file.is_file():
            raise ArtifactError(f"{file}: missing file listed in {MANIFEST_FILE}")
        size = file.stat().st_size
        if size != entry["size"]:
            raise ArtifactError(f"{file}: size {size} bytes differs from the manifest's {entry['size']} (tampered?)")
        if _sha256(file) != entry["sha256"]:
            raise ArtifactError(f"{file}: sha256 differs from the manifest (tampered or corrupt)")
    if manifest.get("version") != content_version(files):
        raise ArtifactError(f"{path}: version {manifest.get('version')!r} does not match the content hash")
    return manifest


def load(directory: str | Path) -> Artifact:
    """Verify and load an artifact: (model in eval mode, config, item_index or None, manifest)."""
    base = Path(directory)
    manifest = read_manifest(base)
    config_path = base / CONFIG_FILE
    try:
        config = ModelConfig.from_json(config_path.read_text())
    except (ConfigError, TypeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{config_path}: not a valid model config ({exc})") from exc

    weights_path = base / WEIGHTS_FILE
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"{weights_path}: unreadable safetensors file ({exc})") from exc
    model = RankerModel(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        missing = sorted(set(expected) - set(found))[:5]
        unexpected = sorted(set(found) - set(expected))[:5]
        shapes = [f"{k}: {found[k]} vs config {expected[k]}" for k in sorted(expected.keys() & found.keys())
                  if found[k] != expected[k]][:5]  # fmt: skip
        raise ArtifactError(
            f"{weights_path}: weights do not match {CONFIG_FILE} (missing {missing}, unexpected {unexpected}, "
            f"shape mismatches {shapes})"
        )
    with torch.no_grad():
        model.load_state_dict(state, strict=True)
    model.eval()

    lookups = _load_lookups(base, manifest, config)
    item_index = None
    if config.gsu in ("soft", "hybrid"):
        index_dir = base / ITEM_INDEX_DIR
        for name in INDEX_FILES:
            if f"{ITEM_INDEX_DIR}/{name}" not in manifest["files"]:
                raise ArtifactError(f"{index_dir / name}: item index file is not listed in {MANIFEST_FILE}")
        assert lookups.items is not None  # gsu soft/hybrid implies vocabulary (ModelConfig.validate)
        try:
            item_index = ItemIndex.load(index_dir, lookups.items.vocab)
        except ItemIndexError as exc:
            raise ArtifactError(f"{index_dir}: {exc}") from exc
        if item_index.dim != config.vector_dim:
            raise ArtifactError(f"{index_dir}: item index vectors have {item_index.dim} dimensions; config needs "
                                f"vector_dim={config.vector_dim}")  # fmt: skip
    return Artifact(model, config, item_index, manifest, _load_dgu(base, manifest, config), lookups)


def _load_lookups(base: Path, manifest: dict[str, Any], config: ModelConfig) -> Lookups:
    """The vocabularies and item tables of a vocabulary model (listed, verified and sized like the config)."""
    if not config.vocabulary:
        return NO_LOOKUPS
    tables_dir = base / TABLES_DIR
    for name in TABLE_FILES:
        if f"{TABLES_DIR}/{name}" not in manifest["files"]:
            raise ArtifactError(f"{tables_dir / name}: item-table file is not listed in {MANIFEST_FILE}")
    try:
        tables = ItemTables.load(tables_dir)
        known = config.category_buckets - 1
        categories = Vocabulary.load(tables_dir / CATEGORY_VOCAB_FILE, overflow=1)
        categories = Vocabulary(categories.known, max(1, known - categories.n_known))
        lookups = Lookups(tables, categories)
        lookups.check(config)
    except (ItemTablesError, VocabularyError, ValueError) as exc:
        raise ArtifactError(f"{tables_dir}: {exc}") from exc
    return lookups


def _load_dgu(base: Path, manifest: dict[str, Any], config: ModelConfig) -> DynamicGatingUnit | None:
    """The DGU when the manifest lists both of its files; None when it lists neither."""
    listed = [name in manifest["files"] for name in (DGU_WEIGHTS_FILE, DGU_CONFIG_FILE)]
    if not any(listed):
        return None
    if not all(listed):
        raise ArtifactError(f"{base}: {DGU_WEIGHTS_FILE} and {DGU_CONFIG_FILE} must be listed together")
    path = base / DGU_CONFIG_FILE
    try:
        sizes = json.loads(path.read_text())
        dgu = DynamicGatingUnit(int(sizes["in_dim"]), int(sizes["hidden"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path}: not a valid DGU config ({exc})") from exc
    if dgu.in_dim != config.behavior_dim:
        raise ArtifactError(f"{path}: in_dim={dgu.in_dim} differs from the model's embedding size "
                            f"{config.behavior_dim}")
    weights = base / DGU_WEIGHTS_FILE
    try:
        state = load_file(str(weights))
        with torch.no_grad():
            dgu.load_state_dict(state, strict=True)
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise ArtifactError(f"{weights}: does not hold the DGU's weights ({exc})") from exc
    return dgu.eval()
