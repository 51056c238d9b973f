"""Fixtures for service tests: small real artifacts (untrained torch models, real Faiss index for soft search)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from models.testing import make_artifact


@pytest.fixture(scope="session")
def artifact_factory() -> Callable[..., Path]:
    return make_artifact


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_artifact(tmp_path_factory.mktemp("artifact") / "sim_can")


@pytest.fixture(scope="session")
def soft_artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_artifact(tmp_path_factory.mktemp("artifact") / "sim_soft", "sim_soft", seed=1)
