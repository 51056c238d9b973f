"""POST /v1/explain and the /ui page on real stores and real (small, untrained) artifacts: the explanation's scores
are /v1/rank's, what it reports is the user's real history, and it is guarded and limited like the docs say."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from models.age import AGEParams
from retrieval.events import EventBatch
from retrieval.history_stats import stat_names
from retrieval.store import open_store
from serving.api_explain import UI_DIR
from serving.app import create_app
from serving.explain import explain
from serving.explain_schemas import ExplainOut
from serving.metrics import Metrics
from serving.model_state import load_model
from serving.pipeline import ExplorePolicy, Ranker
from serving.requests import UNKNOWN_CATEGORY
from serving.settings import Settings

NOW = int(time.time())
AGE_S = 1_000_000  # ~11.6 days: far from the time-bucket (2^20 s) and statistics-window edges, so a second's
# difference between the two requests' clocks changes no feature


def events(user: str, n: int, start_item: int = 10) -> list[dict[str, Any]]:
    """n behaviours over 5 categories; items repeat (every 7th is item 13), so item hits exist."""
    return [{"user_id": user, "item_id": 13 if i % 7 == 0 else start_item + i, "category_id": i % 5,
             "ts": NOW - AGE_S + 60 * i, "action": i % 4} for i in range(n)]  # fmt: skip


CANDIDATES = [{"item_id": 13, "category_id": 0}, {"item_id": 5000, "category_id": 1},
              {"item_id": 5001, "category_id": 3}, {"item_id": 5002}]  # fmt: skip


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_store_url")  # own key prefix, dropped at teardown
        return url
    return f"sqlite:///{tmp_path}/b.db"


def make_client(artifact: Path, store_url: str, **settings: Any) -> TestClient:
    return TestClient(create_app(Settings(store_url=store_url, artifact=artifact, **settings)))


@pytest.fixture
def client(artifact_dir: Path, store_url: str) -> Iterator[TestClient]:
    with make_client(artifact_dir, store_url) as c:
        assert c.post("/v1/events", json={"events": events("u1", 300)}).status_code == 200
        yield c


def test_explain_scores_equal_rank_scores(client: TestClient) -> None:
    body = {"user_id": "u1", "candidates": CANDIDATES, "top_n": 3}
    ranked = client.post("/v1/rank", json=body).json()
    r = client.post("/v1/explain", json={**body, "request_id": "why-1"})
    assert r.status_code == 200, r.text
    out = r.json()
    ExplainOut.model_validate(out)  # exactly the documented fields
    assert out["request_id"] == "why-1" and out["model_version"] == ranked["model_version"] and not out["degraded"]
    assert [i["item_id"] for i in out["items"]] == [i["item_id"] for i in ranked["items"]]
    assert [i["pctr"] for i in out["items"]] == pytest.approx([i["pctr"] for i in ranked["items"]], abs=1e-6)
    assert [i["rank"] for i in out["items"]] == [1, 2, 3]


def test_explanation_reports_the_users_real_history(client: TestClient) -> None:
    out = client.post("/v1/explain", json={"user_id": "u1", "candidates": CANDIDATES}).json()
    stored = client.get("/v1/users/u1/behaviors?limit=1000").json()["behaviors"]
    assert out["history"]["length"] == len(stored) == 300
    short_len = out["history"]["short_len"]
    assert [b["item_id"] for b in out["history"]["short"]] == [b["item_id"] for b in stored[-short_len:]]
    by_item = {i["item_id"]: i for i in out["items"]}
    assert by_item[5002]["category_id"] is None  # sent without a category
    for item in out["items"]:
        for b in item["retrieved"]:  # each position is the behaviour's place in the whole history
            at = stored[b["position"]]
            assert (at["item_id"], at["category_id"], at["ts"], at["action"]) == (
                b["item_id"], b["category_id"], b["ts"], b["action"])  # fmt: skip
            assert b["age_s"] == out["now"] - b["ts"]
            assert b["same_item"] == (b["item_id"] == item["item_id"])
            assert b["attention"] == pytest.approx(np.mean(b["attention_heads"]), abs=1e-6)
        if item["retrieved"]:  # each ESU head's weights sum to 1 over the retrieved behaviours
            heads = np.array([b["attention_heads"] for b in item["retrieved"]])  # [K', H]
            assert heads.shape[1] == out["heads"]
            np.testing.assert_allclose(heads.sum(0), 1.0, atol=1e-5)
        assert len(item["short_attention"]) == short_len and sum(item["short_attention"]) == pytest.approx(1, abs=1e-5)
        assert sum(item["category_density"]) == sum(
            b["category_id"] == item["category_id"] for b in stored)  # fmt: skip
    # the hybrid search found the candidate item's own behaviours (item 13 is every 7th behaviour)
    own = [b for b in by_item[13]["retrieved"] if b["kind"] == "item"]
    assert own and all(b["same_item"] for b in own)
    assert {b["kind"] for b in by_item[5000]["retrieved"]} <= {"soft", "category"}
    assert all(b["category_id"] == 1 for b in by_item[5000]["retrieved"] if b["kind"] == "category")


def test_statistics_are_named_and_count_the_history(client: TestClient, artifact_dir: Path) -> None:
    out = client.post("/v1/explain", json={"user_id": "u1", "candidates": CANDIDATES}).json()
    config = load_model(artifact_dir).config
    names = stat_names(config.stats_spec, config.vocabulary)
    stats = {i["item_id"]: i["stats"] for i in out["items"]}
    assert all(list(s) == names for s in stats.values())
    assert stats[13]["item_seen"] > 0 and stats[5000]["item_seen"] == 0  # item 13 is in the history, 5000 not


def test_long_contribution_is_the_score_without_the_history_beyond_the_short_window(client: TestClient) -> None:
    out = client.post("/v1/explain", json={"user_id": "u1", "candidates": CANDIDATES}).json()
    short = out["history"]["short"]
    # a second user whose whole history is u1's short window: /v1/rank gives it score_short_only
    twin = [{"user_id": "u1-short", **{k: b[k] for k in ("item_id", "category_id", "ts", "action")}} for b in short]
    assert client.post("/v1/events", json={"events": twin}).status_code == 200
    ranked = client.post("/v1/rank", json={"user_id": "u1-short", "candidates": CANDIDATES}).json()["items"]
    short_only = {i["item_id"]: i["pctr"] for i in ranked}
    for item in out["items"]:
        assert item["score_short_only"] == pytest.approx(short_only[item["item_id"]], abs=1e-6)
        assert item["long_contribution"] == pytest.approx(item["pctr"] - item["score_short_only"], abs=1e-7)
    assert any(abs(i["long_contribution"]) > 1e-6 for i in out["items"])  # the long history changed something
    # a user whose history fits in the short window has no long contribution
    same = client.post("/v1/explain", json={"user_id": "u1-short", "candidates": CANDIDATES}).json()["items"]
    assert all(i["long_contribution"] == 0 for i in same)


@pytest.mark.parametrize(("variant", "overrides"), [("sim_can", {}), ("sim_hard", {"vocabulary": False}),
                                                     ("din", {}), ("sim_can", {"user_dim": 4})])  # fmt: skip
def test_same_scores_as_the_pipeline_at_the_same_clock(
    tmp_path: Path, artifact_factory: Any, variant: str, overrides: dict[str, Any]
) -> None:
    """In process, at one clock: the explainer's pCTR is bit-for-bit the pipeline's (hard search: the pipeline
    searches the store's per-category lists, the explainer the whole history)."""
    model = load_model(artifact_factory(tmp_path / variant, variant, **overrides))
    store = open_store(f"sqlite:///{tmp_path}/b.db")
    try:
        rows = events("u1", 400)
        store.append(EventBatch.from_columns(**{k: [r[k] for r in rows] for k in rows[0]}))
        ranker = Ranker(store, Metrics.create())
        items = np.array([c["item_id"] for c in CANDIDATES], dtype=np.int64)
        cats = np.array([c.get("category_id", UNKNOWN_CATEGORY) for c in CANDIDATES], dtype=np.int64)
        ranked = ranker.rank(model, "u1", items, cats, len(items), now=NOW)
        explained = explain(ranker, model, "u1", items, cats, len(items), now=NOW, unknown_category=UNKNOWN_CATEGORY)
        np.testing.assert_array_equal(explained.pctr, ranked.pctr)
        np.testing.assert_array_equal(explained.order, ranked.order)
        has_long = model.config.gsu != "none"
        assert all(bool(i["retrieved"]) == has_long for i in explained.payload["items"] if i["category_id"] is not None)
        explored = ranker.rank(model, "u1", items, cats, len(items), now=NOW,
                               explore_policy=ExplorePolicy(AGEParams(), propensity_draws=0))  # fmt: skip
        assert sorted(explored.order.tolist()) == sorted(ranked.order.tolist())  # the explore path ranks them all
    finally:
        store.close()


def test_guarded_like_the_user_data_endpoints(artifact_dir: Path, tmp_path: Path) -> None:
    body = {"user_id": "u1", "candidates": CANDIDATES}
    with make_client(artifact_dir, f"sqlite:///{tmp_path}/b.db", data_token="dt", admin_token="adm") as c:
        r = c.post("/v1/explain", json=body)
        assert r.status_code == 401 and r.json()["field"] == "Authorization"
        assert c.post("/v1/explain", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
        for token in ("dt", "adm"):
            assert c.post("/v1/explain", json=body, headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_limits_name_the_explain_setting(artifact_dir: Path, tmp_path: Path) -> None:
    with make_client(artifact_dir, f"sqlite:///{tmp_path}/b.db", max_explain_candidates=3) as c:
        r = c.post("/v1/explain", json={"user_id": "u1", "candidates": CANDIDATES})
        assert r.status_code == 422
        err = r.json()
        assert err["field"] == "candidates" and err["limit"] == 3
        assert "LONGRANK_MAX_EXPLAIN_CANDIDATES" in err["message"]
        r = c.post("/v1/explain", json={"user_id": "u1", "item_ids": [1, 2, 1]})
        assert r.status_code == 422 and r.json()["field"] == "item_ids[2]"
        assert c.post("/v1/rank", json={"user_id": "u1", "candidates": CANDIDATES}).status_code == 200  # rank's own


def test_without_a_model_the_answer_is_503(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(store_url=f"sqlite:///{tmp_path}/b.db"))) as c:
        r = c.post("/v1/explain", json={"user_id": "u1", "candidates": CANDIDATES})
        assert r.status_code == 503 and r.json()["error"] == "model_unavailable"


def test_the_page_is_served_and_needs_nothing_from_elsewhere(artifact_dir: Path, tmp_path: Path) -> None:
    with make_client(artifact_dir, f"sqlite:///{tmp_path}/b.db") as c:
        page = c.get("/ui")
        assert page.status_code == 200 and "<title>longrank" in page.text
        for asset in re.findall(r'(?:src|href)="([^"]+)"', page.text):
            assert not asset.startswith(("http:", "https:", "//")), asset
            assert c.get(f"/ui/{asset}").status_code == 200, asset
    for path in UI_DIR.iterdir():  # no external fetches or imports in any file of the page
        text = path.read_text()
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), path.name
    with make_client(artifact_dir, f"sqlite:///{tmp_path}/b.db", ui_enabled=False) as c:
        assert c.get("/ui/").status_code == 404
        assert c.post("/v1/explain", json={"user_id": "u1", "candidates": CANDIDATES}).status_code == 200
