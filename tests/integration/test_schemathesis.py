"""Property-based fuzzing of every endpoint in the OpenAPI schema: whatever the input, never a 5xx.

The app runs with a memory store and a real (small, untrained) artifact, admin enabled, so every route is reachable.
schemathesis loads the schema from the ASGI app when this module is collected (running the app's lifespan), so the
artifact is written then, into a temporary directory."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from models.testing import make_artifact
from serving.app import create_app
from serving.settings import Settings

WORKDIR = Path(tempfile.mkdtemp(prefix="longrank-fuzz-"))
ARTIFACT = make_artifact(WORKDIR / "artifact")
APP = create_app(Settings(store_url="memory://", artifact=ARTIFACT, admin_token="fuzz", max_candidates=200,
                          explore_log=str(WORKDIR / "exploration.jsonl")))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


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
