"""The Redis store on a real 3-master Redis Cluster of local processes (the store contract suite also runs on one,
as its ``redis_cluster`` backend): a user's keys share one slot, a multi-user batch spanning every node is appended
in one call, and the service ranks end to end with ``LONGRANK_STORE_URL=redis://...?cluster=true``."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from retrieval.errors import InvalidStoreURL, StoreUnavailable
from retrieval.events import EventBatch
from retrieval.store import open_store
from retrieval.store.redis import RedisStore
from serving.app import create_app
from serving.settings import Settings
from stack.redis_procs import LocalCluster, free_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]
TS0 = 1_600_000_000


@pytest.fixture
def cluster(redis_cluster: LocalCluster) -> LocalCluster:
    """The session's local cluster (tests/conftest.py)."""
    return redis_cluster


def test_a_users_keys_share_one_slot_and_a_batch_spans_every_node(cluster: LocalCluster) -> None:
    store = open_store(cluster.url + "&key_prefix=slots")
    assert isinstance(store, RedisStore) and store.cluster
    client = store.client
    try:
        users = [f"user-{i}" for i in range(60)]
        for user in users[:5]:
            slots = {client.keyslot(key) for key in store.keys(user).all()}
            assert len(slots) == 1, f"{user}'s keys are in slots {slots}"
        nodes = {client.get_node_from_key(store.keys(u).seq).port for u in users}
        assert nodes == {n.port for n in cluster.nodes}  # the batch below needs every node
        n = len(users) * 3
        batch = EventBatch.from_columns(
            user_id=users * 3, item_id=list(range(n)), category_id=[i % 4 for i in range(n)],
            ts=[TS0 + (i * 37) % 100 for i in range(n)], event_id=[f"e{i}" for i in range(n)],
        )  # fmt: skip
        assert store.append(batch) == (n, 0)
        assert store.append(batch) == (0, n)  # the id sets of every node remember them
        for i, user in enumerate(users):
            history = store.read(user, categories=[0, 1, 2, 3], full=True)
            assert history.length == 3
            assert sorted(history.full["item_id"].tolist()) == [i, i + 60, i + 120]  # type: ignore[index]
            assert sum(len(v) for v in history.by_category.values()) == 3
        assert all(store.delete(u) for u in users)
        assert store.length(users[0]) == 0
    finally:
        store.close()


def test_cluster_flag_and_unreachable_cluster() -> None:
    assert not RedisStore("redis://127.0.0.1:1/0", cluster=False).cluster
    with pytest.raises(InvalidStoreURL, match="cluster"):
        open_store("redis://127.0.0.1:1/0?cluster=maybe")
    with pytest.raises(InvalidStoreURL, match="database 0"):
        open_store("redis://127.0.0.1:1/3?cluster=true")
    store = open_store(f"redis://127.0.0.1:{free_port()}/0?cluster=true&connect_timeout_s=0.2")  # opens lazily
    with pytest.raises(StoreUnavailable):
        store.ping()
    store.close()


def test_rank_round_trip_on_the_cluster(cluster: LocalCluster, artifact_dir: Path) -> None:
    settings = Settings(store_url=cluster.url + "&key_prefix=rank", artifact=artifact_dir)
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").json()["ready"] is True
        events = [{"user_id": "cu", "item_id": 100 + i, "category_id": i % 5, "ts": TS0 + i, "action": i % 4,
                   "event_id": f"c{i}"} for i in range(40)]  # fmt: skip
        assert client.post("/v1/events", json={"events": events}).json() == {"accepted": 40, "duplicates": 0}
        body = {"user_id": "cu", "candidates": [{"item_id": 100 + i, "category_id": i % 5} for i in range(30)],
                "top_n": 7}  # fmt: skip
        ranked = client.post("/v1/rank", json=body)
        assert ranked.status_code == 200, ranked.text
        out = ranked.json()
        assert out["degraded"] is False and len(out["items"]) == 7
        assert [item["rank"] for item in out["items"]] == list(range(1, 8))
        stored = client.get("/v1/users/cu/behaviors", params={"limit": 100}).json()
        assert stored["length"] == 40 and [b["item_id"] for b in stored["behaviors"]] == [100 + i for i in range(40)]
        assert client.delete("/v1/users/cu").json()["deleted"] is True


def test_d9_impressions_on_a_cluster_reach_the_node_that_owns_the_key(cluster: LocalCluster,
                                                                     artifact_dir: Path) -> None:
    """D9: the impression counter ignored ?cluster=true and talked to the seed node alone: when its hash lived on
    another node every call met MOVED, the error was swallowed and exploration was silently off. The counter now
    connects through the same client factory as the store."""
    probe = open_store(cluster.url + "&key_prefix=probe")
    client = probe.client
    prefix = next(p for p in (f"imp{i}" for i in range(100))
                  if client.get_node_from_key(f"{p}:impressions").port != cluster.nodes[0].port)
    probe.close()
    settings = Settings(store_url=f"{cluster.url}&key_prefix={prefix}", artifact=artifact_dir,
                        explore_max_impressions=2, explore_budget=5, explore_lambda=50.0, explore_dropout=0.3)
    with TestClient(create_app(settings)) as c:
        views = [{"user_id": f"viewer{k}", "item_id": 500 + i, "category_id": 1, "ts": TS0, "action": 0}
                 for i in range(10) for k in range(3)]  # fmt: skip
        assert c.post("/v1/events", json={"events": views}).status_code == 200
        state = c.app.state.service  # type: ignore[attr-defined]
        assert state.impressions.counts([500, 509, 510]).tolist() == [3, 3, 0]
        assert state.ranker.impressions.counts([500]).tolist() == [3]  # the rank path's counter too
        metrics = c.get("/metrics").text
        assert 'operation="impressions"' not in metrics  # no swallowed counter error
