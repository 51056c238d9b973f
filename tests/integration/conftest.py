"""Fixtures for service tests: small real artifacts (untrained torch models, real Faiss index for soft search)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from models.artifacts import save
from models.config import ModelConfig
from models.ranker import RankerModel
from retrieval.item_index import ItemIndex

SMALL = {"item_buckets": 4096, "category_buckets": 256, "n_clusters": 16, "nprobe": 4, "long_k": 16, "short_len": 20}


def make_artifact(directory: Path, variant: str = "sim_can", seed: int = 0, **overrides: object) -> Path:
    torch.manual_seed(seed)
    config = ModelConfig.for_variant(variant, **{**SMALL, **overrides})
    model = RankerModel(config).eval()
    index = None
    if config.gsu == "soft":
        keys, queries = model.gsu_tables()
        index = ItemIndex.build(keys, queries, n_clusters=config.n_clusters, seed=seed)
    save(model, config, directory, metrics={"note": "untrained test model"}, item_index=index)
    return directory


@pytest.fixture(scope="session")
def artifact_factory() -> Callable[..., Path]:
    return make_artifact


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_artifact(tmp_path_factory.mktemp("artifact") / "sim_can")


@pytest.fixture(scope="session")
def soft_artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_artifact(tmp_path_factory.mktemp("artifact") / "sim_soft", "sim_soft", seed=1)
