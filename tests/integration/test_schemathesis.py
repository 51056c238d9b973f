"""Property-based fuzzing of every endpoint in the OpenAPI schema: whatever the input, never a 5xx.

The app runs with a memory store and a real (small, untrained) artifact, admin enabled, so every route is reachable.
The app object is built at collection (create_app does no work); its lifespan runs in a module fixture, which also
loads the model, and schemathesis's ASGI calls reach the same app and its state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from serving.app import create_app
from serving.model_state import load_model
from serving.settings import Settings

APP = create_app(Settings(store_url="memory://", admin_token="fuzz", max_candidates=200))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def running_app(artifact_dir: Path) -> Iterator[None]:
    with TestClient(APP):
        APP.state.service.set_model(load_model(artifact_dir))
        yield


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case) -> None:
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error])


def test_fuzzing_reached_the_ranking_model() -> None:
    """Runs after the fuzz cases: some rank calls must have been valid and answered by the model, or the fuzzing
    above proved nothing about the ranking path."""
    text = TestClient(APP).get("/metrics").text
    assert 'longrank_requests_total{method="POST",route="/v1/rank",status="200"}' in text
