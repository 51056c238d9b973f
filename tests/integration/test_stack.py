"""`make stack` end to end: its own redis-server with docker/redis.conf, the bootstrap verbs (data -> train ->
ingest) and two ranker workers; then events in, rankings out, one worker killed with SIGKILL and restarted by
uvicorn's supervisor, and every acknowledged event still readable afterwards. Small synthetic data keeps it short."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from retrieval.store import open_store
from stack.redis_procs import command
from stack.run import Stack, StackConfig, start_stack

pytestmark = [pytest.mark.slow, pytest.mark.redis]
TS0 = 1_700_000_000
SMALL_DATA = ("--users", "12", "--length", "150", "--categories", "8", "--samples-per-user", "5", "--seed", "3")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    config = StackConfig(dir=tmp_path_factory.mktemp("stack"), port=0, redis_port=0, workers=2, data="synthetic",
                         synthetic=SMALL_DATA, train=("--epochs", "1", "--batch-size", "64"), ready_timeout_s=90)
    running = start_stack(config)
    try:
        yield running
    finally:
        running.stop()


def events(user: str, start: int, n: int) -> list[dict[str, object]]:
    return [{"user_id": user, "item_id": 10_000_000 + start + i, "category_id": (start + i) % 8, "ts": TS0 + start + i,
             "action": (start + i) % 4, "event_id": f"stack-{start + i}"} for i in range(n)]


def rank_body(user: str) -> dict[str, object]:
    return {"user_id": user, "candidates": [{"item_id": i, "category_id": i % 8} for i in range(1, 41)], "top_n": 10}


def test_the_stack_uses_the_compose_redis_conf_and_ingested_the_dataset(stack: Stack) -> None:
    port = stack.redis.port
    assert command(port, "CONFIG", "GET", "appendonly").split(b"\r\n")[-2] == b"yes"
    assert command(port, "CONFIG", "GET", "appendfsync").split(b"\r\n")[-2] == b"everysec"
    assert command(port, "CONFIG", "GET", "maxmemory-policy").split(b"\r\n")[-2] == b"noeviction"
    assert (stack.config.dir / "artifact" / "manifest.json").exists()
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        ready = client.get("/readyz").json()
        assert ready["ready"] and ready["store"] == "ok"
        stored = client.get("/v1/users/u000000/behaviors", params={"limit": 5}).json()
        assert stored["length"] == 150  # the synthetic dataset's first user, ingested by the bootstrap
    assert len(stack.worker_pids()) == 2


def worker_serving(stack: Stack, client_port: int) -> int | None:
    """The worker pid holding the server side of our TCP connection (Linux /proc: socket inode -> process fd)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            local, remote = int(cols[1].rsplit(":", 1)[1], 16), int(cols[2].rsplit(":", 1)[1], 16)
            if local == stack.port and remote == client_port:
                inodes.add(f"socket:[{cols[9]}]")
    for pid in stack.worker_pids():
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) in inodes:
                    return pid
            except OSError:
                continue
    return None


def post(conn: http.client.HTTPConnection, path: str, body: object) -> tuple[int, dict[str, object]]:
    conn.request("POST", path, body=json.dumps(body), headers={"content-type": "application/json"})
    reply = conn.getresponse()
    return reply.status, json.loads(reply.read())


def accepted_counter(text: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith('longrank_events_total{outcome="accepted"}'))
    return float(line.rsplit(" ", 1)[1])


def test_events_in_rankings_out_and_a_killed_worker_loses_no_acknowledged_event(stack: Stack) -> None:
    user = "stack-user"
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    first = events(user, 0, 20)
    assert post(conn, "/v1/events", {"events": first}) == (200, {"accepted": 20, "duplicates": 0})
    acked = list(first)
    status, ranked = post(conn, "/v1/rank", rank_body(user))
    assert status == 200 and len(ranked["items"]) == 10  # type: ignore[arg-type]

    before = stack.worker_pids()
    victim = worker_serving(stack, conn.sock.getsockname()[1])
    assert victim in before  # the worker that acknowledged those events and served that ranking
    os.kill(victim, signal.SIGKILL)
    sent, failed = 20, 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # keep writing while the supervisor notices and restarts the worker
        batch = events(user, sent, 5)
        sent += 5
        try:
            status, _ = post(conn, "/v1/events", {"events": batch})
            if status == 200:
                acked += batch
        except (OSError, http.client.HTTPException):
            failed += 1  # not acknowledged (the client would resend: event ids make that safe); reconnect
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
        now = stack.worker_pids()
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.05)
    after = stack.worker_pids()
    assert victim not in after and len(after) == 2, f"worker {victim} was not replaced: {before} -> {after}"
    assert failed >= 1  # our connection was the killed worker's

    # the replacement really serves: kill the other original worker too, then a request must be answered by a
    # worker started after the kills (connections wait in the shared socket's backlog while it starts)
    survivor = next(p for p in before if p != victim)
    os.kill(survivor, signal.SIGKILL)
    served_by = None
    deadline = time.monotonic() + 60
    while served_by is None and time.monotonic() < deadline:
        fresh = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=60)
        try:
            status, _ = post(fresh, "/v1/rank", rank_body(user))
            assert status == 200
            served_by = worker_serving(stack, fresh.sock.getsockname()[1])
        except (OSError, http.client.HTTPException):
            time.sleep(0.2)  # reached the survivor as it died
        finally:
            fresh.close()
    assert served_by is not None and served_by not in before, (before, served_by)

    with httpx.Client(base_url=stack.url, timeout=30) as client:
        for _ in range(10):  # the service keeps answering
            assert client.post("/v1/rank", json=rank_body(user)).status_code == 200
        stored = client.get(f"/v1/users/{user}/behaviors", params={"limit": 10_000}).json()
        metrics = client.get("/metrics").text
    conn.close()
    got = {(b["item_id"], b["ts"]) for b in stored["behaviors"]}
    missing = [e for e in acked if (e["item_id"], e["ts"]) not in got]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged events lost after the worker kill"
    assert stored["length"] == len(acked)  # and nothing unacknowledged was half-written
    # /metrics sums every worker, the killed one included (it acknowledged the first 20 events)
    assert accepted_counter(metrics) == len(acked)
    assert 'longrank_model_info{' in metrics and 'variant="sim_can"' in metrics

    direct = open_store(stack.store_url)  # straight from Redis, not through the workers
    try:
        assert direct.length(user) == len(acked)
    finally:
        direct.delete(user)
        direct.close()
