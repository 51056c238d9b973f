"""Store conditions answered right: Redis over maxmemory (D1), a read-only replica (D2).

Each test runs its own redis-server. The service runs in-process (TestClient); its store is the real Redis."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from retrieval.events import EventBatch
from retrieval.store import open_store
from serving.app import create_app
from serving.settings import Settings
from stack.redis_procs import RedisProcess
from tests.faults.conftest import TS0, Outcome, assert_nothing_acknowledged_was_lost, events, rank_body, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow]
CAP = 3 * 1024 * 1024


def _settings(url: str, artifact: Path, **kw: Any) -> Settings:
    return Settings(store_url=url, artifact=artifact, store_connect_timeout_s=0.5, store_timeout_s=0.5,
                    access_log=False, log_level="warning", **kw)  # fmt: skip


def _info(server: RedisProcess, field: str) -> int:
    client = redis.Redis(port=server.port)
    try:
        return int(client.info("memory")[field])
    finally:
        client.close()


@pytest.mark.parametrize("with_ids", [True, False], ids=["with-event-ids", "without-event-ids"])
def test_d1_a_full_redis_refuses_appends_whole_and_keeps_serving_reads(
    redis_server: Callable[..., RedisProcess], artifact_dir: Path, with_ids: bool
) -> None:
    """D1: over maxmemory (noeviction) appends with event ids were still acknowledged (Redis grew to 2.2x its cap),
    appends without ids answered 500, reads of a user's behaviours 500, rankings silently degraded, /readyz 200."""
    server = redis_server("--maxmemory", str(CAP), "--maxmemory-policy", "noeviction")
    outcome = Outcome()
    with TestClient(create_app(_settings(server.url, artifact_dir))) as c:
        full_at = None
        for k in range(400):  # 1,000-event batches over 8 users until Redis says full, then 5 more
            user = f"heavy{k % 8}"
            batch = events(user, 1000 * k, 1000, ids=with_ids)
            r = c.post("/v1/events", json={"events": batch})
            outcome.record(r)
            if r.status_code == 200:
                assert full_at is None, "an append was acknowledged after Redis said it was full"
                outcome.acked.setdefault(user, set()).update(e["item_id"] for e in batch)
            elif full_at is None:
                full_at = k
            if full_at is not None and k >= full_at + 5:
                break
        assert full_at is not None, "Redis never filled up"
        outcome.assert_only_promised_statuses()
        assert outcome.errors == {"store_full": 6}
        refused = c.post("/v1/events", json={"events": events("heavy0", 10**7, 1, ids=with_ids)})
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
        assert "127.0.0.1" not in refused.json()["message"] and str(server.port) not in refused.json()["message"]
        # Redis stayed near its cap: every refused script was refused whole, before it wrote anything
        assert _info(server, "used_memory") < 1.25 * CAP

        # reads work while full: stored behaviours, rankings with history, the readiness report
        stored = c.get("/v1/users/heavy0/behaviors", params={"limit": 5})
        assert stored.status_code == 200 and stored.json()["length"] == len(outcome.acked["heavy0"])
        ranked = c.post("/v1/rank", json=rank_body("heavy0"))
        assert ranked.status_code == 200 and ranked.json()["degraded"] is False
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["store"] == "store_full"
        assert c.get("/healthz").status_code == 200

        redis.Redis(port=server.port).config_set("maxmemory", "0")  # the operator makes room
        wait_until(lambda: c.get("/readyz").status_code == 200, 10, "ready after maxmemory was raised")
        again = c.post("/v1/events", json={"events": events("heavy0", 10**7, 3, ids=with_ids)})
        assert again.status_code == 200 and again.json()["accepted"] == 3
    assert_nothing_acknowledged_was_lost(server.url, outcome)


def test_d2_a_read_only_replica_answers_503_for_writes_and_serves_reads(
    redis_server: Callable[..., RedisProcess], artifact_dir: Path
) -> None:
    """D2: any Redis error that was not a connection error (READONLY after a failover, OOM) answered 500 store_error
    without Retry-After."""
    primary = redis_server()
    replica = redis_server("--replicaof", "127.0.0.1", str(primary.port))
    writer = open_store(primary.url)
    writer.append(EventBatch.from_columns(user_id=["r1"] * 20, item_id=list(range(20)),
                                          category_id=[i % 7 for i in range(20)], ts=[TS0 + i for i in range(20)]))
    writer.close()
    reader = open_store(replica.url)
    wait_until(lambda: reader.length("r1") == 20, 20, "the replica caught up")
    reader.close()
    outcome = Outcome()
    with TestClient(create_app(_settings(replica.url, artifact_dir))) as c:
        for body in ({"events": events("r1", 100, 5)}, {"events": events("r2", 0, 1, ids=False)}):
            r = c.post("/v1/events", json=body)
            outcome.record(r)
            assert r.status_code == 503 and r.json()["error"] == "store_read_only"
            assert int(r.headers["retry-after"]) >= 1 and str(replica.port) not in r.json()["message"]
        erase = c.delete("/v1/users/r1")
        outcome.record(erase)
        assert erase.status_code == 503 and erase.json()["error"] == "store_read_only"
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["store"] == "store_read_only"
        stored = c.get("/v1/users/r1/behaviors", params={"limit": 50})
        assert stored.status_code == 200 and stored.json()["length"] == 20
        ranked = c.post("/v1/rank", json=rank_body("r1"))
        assert ranked.status_code == 200 and ranked.json()["degraded"] is False
        outcome.assert_only_promised_statuses()
        assert "longrank_store_errors_total{kind=\"StoreReadOnly\",operation=\"append\"} 2.0" in c.get("/metrics").text
