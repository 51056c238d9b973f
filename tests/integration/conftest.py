"""Fixtures for service tests: small real artifacts (untrained torch models, real Faiss index for soft search)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

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


@pytest.fixture
def redis_store_url(redis_url: str) -> Iterator[str]:
    """A store URL on the test Redis with a key prefix of its own; every key under that prefix (behaviours,
    impression counts, …) is deleted at teardown."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    yield f"{redis_url}?key_prefix={prefix}"
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
