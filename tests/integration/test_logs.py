"""Logs (serving/logs.py): one formatter, JSON lines with the request id, the user id hashed, the model version and
the stage timings; an access log that can be turned off; a swallowed exception logged once with its traceback."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.logs import LogFormatter, hash_user
from serving.settings import Settings
from stack.redis_procs import RedisProcess

NOW = int(time.time())


def lines(caplog: pytest.LogCaptureFixture, logger: str, json_format: bool = True) -> list[dict[str, object]]:
    fmt = LogFormatter(json=json_format)
    return [json.loads(fmt.format(r)) for r in caplog.records if r.name == logger]


def test_access_lines_carry_request_id_hashed_user_model_and_timings(
    artifact_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(store_url="memory://", artifact=artifact_dir, log_salt="pepper", log_level="info")
    with TestClient(create_app(settings)) as c, caplog.at_level(logging.INFO):
        r = c.post("/v1/rank", json={"user_id": "alice-42", "item_ids": [1, 2, 3]},
                   headers={"X-Request-ID": "trace-7"})  # fmt: skip
        assert r.status_code == 200 and r.headers["x-request-id"] == "trace-7"
        assert r.json()["request_id"] == "trace-7"  # the client's id is the response's id
        own = c.post("/v1/rank", json={"user_id": "alice-42", "item_ids": [1], "request_id": "body-id"})
        assert own.headers["x-request-id"] == "body-id" == own.json()["request_id"]
        c.post("/v1/rank", json={"user_id": "alice-42", "item_ids": [1, True]})
    access = lines(caplog, "longrank.access")
    first = next(x for x in access if x.get("request_id") == "trace-7")
    assert first["route"] == "/v1/rank" and first["status"] == 200 and first["candidates"] == 3
    assert first["user"] == hash_user("alice-42", b"pepper") and "alice-42" not in json.dumps(access)
    assert first["model_version"] == r.json()["model_version"]
    assert set(first["timings_ms"]) >= {"store", "gsu", "model"}  # type: ignore[arg-type]
    refused = access[-1]
    assert refused["status"] == 422 and refused["error"] == "invalid_request"


def test_the_access_log_can_be_turned_off(artifact_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with TestClient(create_app(Settings(store_url="memory://", access_log=False))) as c, caplog.at_level(logging.INFO):
        assert c.get("/healthz").status_code == 200
        assert c.get("/healthz").headers["x-request-id"]  # the id still flows
    assert lines(caplog, "longrank.access") == []


def test_a_swallowed_store_error_is_logged_once_with_its_traceback(
    redis_server: Callable[..., RedisProcess], artifact_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_server()
    settings = Settings(store_url=server.url, artifact=artifact_dir, store_connect_timeout_s=0.2,
                        store_timeout_s=0.2, access_log=False)  # fmt: skip
    with TestClient(create_app(settings)) as c:
        server.kill()
        with caplog.at_level(logging.WARNING):
            for _ in range(5):  # five degraded rankings within a second
                r = c.post("/v1/rank", json={"user_id": "u", "item_ids": [1, 2]}, headers={"X-Request-ID": "deg-1"})
                assert r.status_code == 200 and r.json()["degraded"] is True
    degraded = [x for x in lines(caplog, "longrank.pipeline") if "history read" in str(x["message"])]
    assert len(degraded) == 1, degraded  # once (repeats within a second are counted into the next line)
    line = degraded[0]
    assert line["error_type"] == "StoreUnavailable" and "Traceback" in str(line["traceback"])
    assert line["request_id"] == "deg-1"  # logged in the inference thread, still carries the request id
    assert str(server.port) in str(line["where"])  # the log (not the client) may say where


def test_text_format_has_the_same_fields(caplog: pytest.LogCaptureFixture) -> None:
    record = logging.LogRecord("longrank.x", logging.WARNING, __file__, 1, "hello %s", ("there",), None)
    record.fields = {"user": "abc", "status": 503}
    text = LogFormatter(json=False).format(record)
    assert "WARNING longrank.x: hello there" in text and "user=abc" in text and "status=503" in text
    data = json.loads(LogFormatter(json=True).format(record))
    assert data["message"] == "hello there" and data["level"] == "warning" and data["user"] == "abc"
