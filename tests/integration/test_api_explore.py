"""AGE exploration through POST /v1/rank: flags, budget, the JSONL log, the kill switch, the impression limit and
the DGU gate, on real stores (memory and the test Redis) and real torch artifacts."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import torch
from fastapi.testclient import TestClient

from models.age import DynamicGatingUnit
from models.artifacts import load, save
from serving.app import create_app
from serving.exploration_log import RECORD_FIELDS, read_records
from serving.settings import Settings

NOW = int(time.time())
EXPLORE = {"explore_policy": "ts", "explore_lambda": 50.0, "explore_dropout": 0.3, "explore_budget": 2}


def _url(kind: str) -> tuple[str, str]:
    if kind == "redis":
        base = os.environ.get("LONGRANK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
        prefix = f"test-explore-{uuid.uuid4().hex[:8]}"
        return f"{base}?key_prefix={prefix}", prefix
    return "memory://", ""


@pytest.fixture(params=["memory", "redis"])
def make_client(request: pytest.FixtureRequest, tmp_path: Path, artifact_dir: Path) -> Iterator[
        Callable[..., TestClient]]:
    url, prefix = _url(request.param)
    opened: list[Any] = []

    def make(**overrides: Any) -> TestClient:
        settings = Settings(store_url=url, artifact=overrides.pop("artifact", artifact_dir),
                            explore_log=str(tmp_path / "explore.jsonl"), **{**EXPLORE, **overrides})
        ctx = TestClient(create_app(settings))
        client = ctx.__enter__()
        opened.append(ctx)
        return client

    yield make
    for ctx in opened:
        ctx.__exit__(None, None, None)
    if prefix:
        base = os.environ.get("LONGRANK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
        client = redis.Redis.from_url(base)
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


def candidates(n: int, start: int = 1000) -> list[dict[str, int]]:
    return [{"item_id": start + i, "category_id": i % 5} for i in range(n)]


def rank(client: TestClient, n: int = 30, top_n: int = 10, **extra: Any) -> dict[str, Any]:
    r = client.post("/v1/rank", json={"user_id": "u1", "candidates": candidates(n), "top_n": top_n, **extra})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_explore_flags_items_within_budget_and_logs_them(make_client: Callable[..., TestClient],
                                                         tmp_path: Path) -> None:
    client = make_client()
    seen = 0
    for i in range(6):
        body = rank(client, explore=True, request_id=f"r{i}")
        items = body["items"]
        explored = [it for it in items if it["explored"]]
        assert len(explored) <= 2
        assert all(it["score"] > it["pctr"] for it in explored)
        assert all(it["score"] == it["pctr"] for it in items if not it["explored"])
        assert [it["score"] for it in items] == sorted((it["score"] for it in items), reverse=True)
        seen += len(explored)
    assert seen > 0, "a large λ with dropout 0.3 must explore something"

    records = list(read_records(str(tmp_path / "explore.jsonl")))
    assert [r["request_id"] for r in records] == [f"r{i}" for i in range(6)]
    last = records[-1]
    assert set(RECORD_FIELDS) <= set(last)
    assert last["user_id"] == "u1" and last["policy"] == "ts" and last["params"]["lam"] == 50.0
    assert last["params"]["budget"] == 2 and last["params"]["gate"] == "none"
    assert last["candidates"] == [c["item_id"] for c in candidates(30)]
    assert len(last["pctr"]) == len(last["explored_score"]) == len(last["eligible"]) == 30
    assert len(last["order"]) == len(last["explored"]) == 10
    shown = [last["candidates"][i] for i in last["order"]]
    assert shown == [it["item_id"] for it in body["items"]]
    assert last["explored"] == [it["explored"] for it in body["items"]]
    assert last["model_version"] == body["model_version"]
    draws = last["params"]["propensity_draws"]
    assert len(last["propensity"]) == 10 and all(1 / draws <= p <= 1 for p in last["propensity"])
    timing = client.post("/v1/rank", json={"user_id": "u1", "candidates": candidates(5), "explore": True})
    assert "explore;dur=" in timing.headers["server-timing"]
    metrics = client.get("/metrics").text
    assert any(line.startswith("longrank_explored_items_total ") and float(line.split()[1]) >= seen
               for line in metrics.splitlines())


@pytest.mark.parametrize(("policy", "lam"), [("ts", 0.002), ("ts", 50.0), ("dropout_ts", 1.0)])
def test_no_item_is_flagged_explored_unless_exploration_changed_the_slate(make_client: Callable[..., TestClient],
                                                                          policy: str, lam: float) -> None:
    client = make_client(explore_policy=policy, explore_lambda=lam)
    greedy = [it["item_id"] for it in rank(client, top_n=10)["items"]]
    changed = 0
    for i in range(8):
        items = rank(client, explore=True, request_id=f"honest{i}")["items"]
        flagged = {it["item_id"] for it in items if it["explored"]}
        assert not flagged & set(greedy), "an item greedy shows anyway is never 'explored'"
        assert {it["item_id"] for it in items} - flagged <= set(greedy)
        if not flagged:
            assert [it["item_id"] for it in items] == greedy  # nothing explored: exactly the greedy slate
        changed += bool(flagged)
    if lam > 0.002:  # a large step (ts) and MC dropout at 0.3 (dropout_ts) do change slates
        assert changed > 0


def test_same_request_id_explores_the_same_way(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    a = rank(client, explore=True, request_id="same")
    b = rank(client, explore=True, request_id="same")
    assert a["items"] == b["items"]


def test_not_explored_unless_asked_or_sampled(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    client = make_client()
    assert not any(it["explored"] for it in rank(client)["items"])
    assert not any(it["explored"] for it in rank(client, explore=False)["items"])
    assert not (tmp_path / "explore.jsonl").exists()
    always = make_client(explore_fraction=1.0)
    rank(always, request_id="by-fraction")
    assert [r["request_id"] for r in read_records(str(tmp_path / "explore.jsonl"))] == ["by-fraction"]


def test_kill_switch_turns_exploration_off(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    client = make_client(explore_enabled=False, explore_fraction=1.0)
    for i in range(4):
        assert not any(it["explored"] for it in rank(client, explore=True, request_id=f"k{i}")["items"])
    assert not (tmp_path / "explore.jsonl").exists()


def test_items_over_the_impression_limit_are_never_explored(make_client: Callable[..., TestClient],
                                                            tmp_path: Path) -> None:
    client = make_client(explore_max_impressions=2, explore_budget=30)
    cands = candidates(30)
    greedy = [it["item_id"] for it in rank(client, top_n=10)["items"]]
    outside = [c["item_id"] for c in cands if c["item_id"] not in greedy]  # only these can be explored into top 10
    keep = {outside[0], outside[1]}
    views = [{"user_id": f"v{k}", "item_id": c["item_id"], "category_id": c["category_id"], "ts": NOW - 100,
              "action": 0, "event_id": f"view-{k}-{c['item_id']}"} for c in cands if c["item_id"] not in keep
             for k in range(2)]
    r = client.post("/v1/events", json={"events": views})
    assert r.json() == {"accepted": len(views), "duplicates": 0}
    again = client.post("/v1/events", json={"events": views})  # a retried batch: duplicates, not impressions
    assert again.json()["duplicates"] == len(views)
    explored: set[int] = set()
    for i in range(8):
        body = rank(client, top_n=10, explore=True, request_id=f"imp{i}")
        explored |= {it["item_id"] for it in body["items"] if it["explored"]}
    assert explored and explored <= keep
    record = list(read_records(str(tmp_path / "explore.jsonl")))[-1]
    eligible = {item for item, ok in zip(record["candidates"], record["eligible"], strict=True) if ok}
    assert eligible == keep
    for k in ("v0", "v1"):
        client.delete(f"/v1/users/{k}")


def test_a_dgu_above_every_pctr_gates_everything_out(make_client: Callable[..., TestClient],
                                                     artifact_dir: Path, tmp_path: Path) -> None:
    art = load(artifact_dir)
    dgu = DynamicGatingUnit(art.config.behavior_dim, 4)
    with torch.no_grad():
        dgu.net[-1].bias.fill_(40.0)
    save(art.model, art.config, tmp_path / "gated", dgu=dgu, item_index=art.item_index, lookups=art.lookups)
    client = make_client(artifact=tmp_path / "gated")
    for i in range(4):
        assert not any(it["explored"] for it in rank(client, explore=True, request_id=f"g{i}")["items"])
    record = json.loads((tmp_path / "explore.jsonl").read_text().splitlines()[-1])
    assert record["params"]["gate"] == "dgu"
    assert record["explored_score"] == record["pctr"]


def test_export_log_joins_clicks_into_obp_arrays(tmp_path: Path, artifact_dir: Path) -> None:
    from cli.main import main

    url = f"sqlite:///{tmp_path}/b.db"
    settings = Settings(store_url=url, artifact=artifact_dir, explore_log=str(tmp_path / "log.jsonl"), **EXPLORE)
    with TestClient(create_app(settings)) as client:
        shown = [rank(client, explore=True, request_id=f"e{i}", top_n=4)["items"] for i in range(3)]
        clicked = shown[1][2]["item_id"]
        click = {"user_id": "u1", "item_id": clicked, "category_id": 0, "ts": int(time.time()) + 5, "action": 1}
        assert client.post("/v1/events", json={"events": [click]}).status_code == 200
    out = tmp_path / "obp.npz"
    assert main(["export-log", "--log", str(tmp_path / "log.jsonl"), "--events", url, "--out", str(out)]) == 0
    data = np.load(out)
    n = int(data["n_rounds"])
    assert n == 12 and int(data["len_list"]) == 4
    for key in ("action", "position", "reward", "pscore", "pscore_logged", "explored", "round"):
        assert data[key].shape == (n,), key
    assert data["context"].shape == (n, 4)
    assert data["position"].tolist() == [0, 1, 2, 3] * 3
    assert data["item_ids"][data["action"]].tolist() == [it["item_id"] for items in shown for it in items]
    # the click came after all three responses: every row showing the clicked item, and only those, is rewarded
    items = data["item_ids"][data["action"]]
    assert data["reward"].tolist() == (items == clicked).astype(int).tolist() and data["reward"][4 + 2] == 1
    assert data["pscore_logged"].all() and np.all((data["pscore"] > 0) & (data["pscore"] <= 1))
    assert np.allclose(data["pctr"], data["context"][:, 0])
    assert main(["ope", "--feedback", str(out), "--json"]) == 0
    assert data["explored"].tolist() == [it["explored"] for items in shown for it in items]
    assert main(["export-log", "--log", str(tmp_path / "missing.jsonl"), "--events", url, "--out", str(out)]) == 2
