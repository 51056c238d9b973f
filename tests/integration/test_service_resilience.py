"""Degraded mode (the store goes away and comes back) and hot reload (good and broken artifacts)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from serving.app import create_app
from serving.settings import Settings
from stack.redis_procs import RedisProcess

NOW = int(time.time())  # events sit ~3,000 s back: far from a log2 time-bucket edge (2,048 / 4,096 s)
CANDS = [{"item_id": 100 + i, "category_id": i % 3} for i in range(20)]


def events(n: int) -> list[dict[str, object]]:
    return [{"user_id": "u1", "item_id": i, "category_id": i % 3, "ts": NOW - 3000 + i} for i in range(n)]


def test_store_down_degrades_then_recovers(redis_server: Callable[..., RedisProcess], artifact_dir: Path) -> None:
    server = redis_server()
    settings = Settings(store_url=server.url, artifact=artifact_dir, store_read_budget_s=0.05,
                        store_connect_timeout_s=0.2, store_timeout_s=0.2)
    with TestClient(create_app(settings)) as c:
        assert c.post("/v1/events", json={"events": events(30)}).status_code == 200
        healthy = c.post("/v1/rank", json={"user_id": "u1", "candidates": CANDS}).json()
        assert healthy["degraded"] is False

        server.kill()
        for _ in range(3):
            r = c.post("/v1/rank", json={"user_id": "u1", "candidates": CANDS})
            assert r.status_code == 200 and r.json()["degraded"] is True
        assert c.get("/readyz").status_code == 503
        assert c.post("/v1/events", json={"events": events(1)}).status_code == 503
        assert "longrank_degraded_responses_total 3.0" in c.get("/metrics").text

        server.restart()
        deadline = time.time() + 10
        while c.get("/readyz").status_code != 200 and time.time() < deadline:
            time.sleep(0.1)
        assert c.post("/v1/events", json={"events": events(30)}).status_code == 200
        recovered = c.post("/v1/rank", json={"user_id": "u1", "candidates": CANDS}).json()
        assert recovered["degraded"] is False
        assert [i["item_id"] for i in recovered["items"]] == [i["item_id"] for i in healthy["items"]]


def _reload(c: TestClient, token: str, path: Path | None) -> tuple[int, dict[str, object]]:
    body = {"artifact": str(path)} if path is not None else {}
    r = c.post("/v1/admin/reload", json=body, headers={"Authorization": f"Bearer {token}"})
    return r.status_code, r.json()


def test_reload_swaps_good_and_refuses_broken(
    tmp_path: Path, artifact_dir: Path, artifact_factory: Callable[..., Path]
) -> None:
    other = artifact_factory(tmp_path / "other", seed=7)
    broken = tmp_path / "broken"
    shutil.copytree(other, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"tampered")

    settings = Settings(store_url="memory://", artifact=artifact_dir, admin_token="s3cret")
    with TestClient(create_app(settings)) as c:
        first = c.post("/v1/rank", json={"user_id": "u1", "candidates": CANDS}).json()["model_version"]
        assert c.post("/v1/admin/reload", json={}).status_code == 401
        assert _reload(c, "wrong", other)[0] == 401

        status, body = _reload(c, "s3cret", broken)
        assert status == 422 and "model.safetensors" in str(body["message"])
        assert c.post("/v1/rank", json={"user_id": "u1", "candidates": CANDS}).json()["model_version"] == first

        status, body = _reload(c, "s3cret", other)
        assert status == 200 and body["previous_version"] == first and body["model_version"] != first
        now = c.post("/v1/rank", json={"user_id": "u1", "candidates": CANDS}).json()["model_version"]
        assert now == body["model_version"]
        assert f'version="{now}"' in c.get("/metrics").text


def test_admin_is_off_without_token(artifact_dir: Path) -> None:
    with TestClient(create_app(Settings(store_url="memory://", artifact=artifact_dir))) as c:
        assert c.post("/v1/admin/reload", json={}).status_code == 404
