"""The HTTP surface of issue 2 (events, behaviours, erasure, health, limits) on every store backend."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.settings import Settings

NOW = int(time.time())


@pytest.fixture(params=["memory", "sqlite", "redis"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    url = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path}/b.db"}.get(request.param)
    if url is None:
        url = request.getfixturevalue("redis_store_url")  # own key prefix, dropped at teardown
    settings = Settings(store_url=url, max_events_per_batch=5, max_body_bytes=4096, max_behaviors_per_read=200)
    with TestClient(create_app(settings)) as c:
        yield c


def ev(item: int, ts: int = NOW - 100, **kw: object) -> dict[str, object]:
    return {"user_id": "u1", "item_id": item, "category_id": 7, "ts": ts, **kw}


def test_events_are_visible_and_idempotent(client: TestClient) -> None:
    r = client.post("/v1/events", json={"events": [ev(1, event_id="a"), ev(2, ts=NOW - 200, event_id="b")]})
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 2, "duplicates": 0}
    again = client.post("/v1/events", json={"events": [ev(1, event_id="a"), ev(3, event_id="c")]})
    assert again.json() == {"accepted": 1, "duplicates": 1}
    body = client.get("/v1/users/u1/behaviors", params={"limit": 10}).json()
    assert body["length"] == 3
    assert [b["item_id"] for b in body["behaviors"]] == [2, 1, 3]  # time order, arrival order on ties


def test_delete_erases_the_user(client: TestClient) -> None:
    client.post("/v1/events", json={"events": [ev(1)]})
    assert client.delete("/v1/users/u1").json() == {"user_id": "u1", "deleted": True}
    assert client.get("/v1/users/u1/behaviors").json()["length"] == 0
    assert client.delete("/v1/users/u1").json()["deleted"] is False


def test_invalid_event_rejects_whole_batch_and_names_field(client: TestClient) -> None:
    r = client.post("/v1/events", json={"events": [ev(1), ev(2, ts=100)]})
    assert r.status_code == 422
    assert r.json()["field"] == "events[1].ts"
    assert client.get("/v1/users/u1/behaviors").json()["length"] == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"events": [ev(-1)]}, "events[0].item_id"),
        ({"events": [{**ev(1), "user_id": "bad user"}]}, "events[0].user_id"),
        ({"events": []}, "events"),
        ({"events": [ev(1)], "extra": 1}, "extra"),
    ],
)
def test_schema_errors_name_the_field(client: TestClient, payload: dict[str, object], field: str) -> None:
    r = client.post("/v1/events", json=payload)
    assert r.status_code == 422
    assert r.json()["field"] == field


def test_limits_are_named(client: TestClient) -> None:
    r = client.post("/v1/events", json={"events": [ev(i) for i in range(6)]})
    assert (r.status_code, r.json()["limit"], r.json()["field"]) == (422, 5, "events")
    r = client.get("/v1/users/u1/behaviors", params={"limit": 201})
    assert (r.status_code, r.json()["limit"]) == (422, 200)
    big = b'{"events": [' + b" " * 5000 + b"]}"
    r = client.post("/v1/events", content=big, headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["limit"]) == (413, 4096)


def test_malformed_json_is_4xx(client: TestClient) -> None:
    r = client.post("/v1/events", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_request"


def test_health_ready_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    client.post("/v1/events", json={"events": [ev(1)]})
    text = client.get("/metrics").text
    assert 'longrank_events_total{outcome="accepted"} 1.0' in text
    assert 'route="/v1/events"' in text


def test_readyz_is_503_when_store_unreachable(tmp_path: Path) -> None:
    settings = Settings(store_url="redis://127.0.0.1:1/0", store_connect_timeout_s=0.2, store_timeout_s=0.2)
    with TestClient(create_app(settings)) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["ready"] is False
        r = c.post("/v1/events", json={"events": [ev(1)]})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
