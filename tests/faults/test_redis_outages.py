"""Redis killed (-9) and frozen (SIGSTOP) under load: writers and rankers keep going through the outage; every
answer is a 200 or a 503 with Retry-After, rankings degrade instead of failing, nothing acknowledged is lost, and the
service recovers by itself when Redis is back."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.settings import Settings
from stack.redis_procs import RedisProcess
from tests.faults.conftest import Load, assert_nothing_acknowledged_was_lost

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def _app(url: str, artifact: Path) -> TestClient:
    settings = Settings(store_url=url, artifact=artifact, store_connect_timeout_s=0.3, store_timeout_s=0.3,
                        store_read_budget_s=0.05, queue_timeout_s=5, max_queue=64, access_log=False,
                        log_level="error")  # fmt: skip
    return TestClient(create_app(settings))


def _under_load(c: TestClient, fault: Callable[[], None], recover: Callable[[], None]) -> Load:
    load = Load(lambda: c, writers=2, rankers=1)
    with load:
        time.sleep(0.5)
        fault()
        time.sleep(1.0)
        recover()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # keep the load on until writes are acknowledged again
            before = load.outcome.statuses[200]
            time.sleep(0.5)
            if c.get("/readyz").status_code == 200 and load.outcome.statuses[200] > before:
                break
        time.sleep(0.3)
    return load


def test_kill_9_of_redis_under_load(redis_server: Callable[..., RedisProcess], artifact_dir: Path) -> None:
    server = redis_server("--appendonly", "yes", "--appendfsync", "always")
    with _app(server.url, artifact_dir) as c:
        load = _under_load(c, server.kill, server.start)
        outcome = load.outcome
        outcome.assert_only_promised_statuses()
        assert outcome.statuses[503] > 0, "the outage was never seen"
        assert outcome.errors.keys() <= {"store_unavailable", "store_timeout", "store_loading"}
        assert outcome.statuses[200] > 0 and outcome.acked_total() > 0
        assert "longrank_degraded_responses_total" in c.get("/metrics").text
    assert_nothing_acknowledged_was_lost(server.url, outcome)


def test_sigstop_of_redis_under_load(redis_server: Callable[..., RedisProcess], artifact_dir: Path) -> None:
    server = redis_server("--appendonly", "yes", "--appendfsync", "always")
    assert server.proc is not None
    pid = server.proc.pid
    with _app(server.url, artifact_dir) as c:
        load = _under_load(c, lambda: os.kill(pid, signal.SIGSTOP), lambda: os.kill(pid, signal.SIGCONT))
        outcome = load.outcome
        outcome.assert_only_promised_statuses()
        assert outcome.errors["store_timeout"] > 0, "the freeze was never seen"
        assert outcome.statuses[200] > 0
        degraded = [line for line in c.get("/metrics").text.splitlines()
                    if line.startswith("longrank_degraded_responses_total")]  # fmt: skip
        assert degraded and float(degraded[0].split()[-1]) > 0  # rankings went on without history
    assert_nothing_acknowledged_was_lost(server.url, outcome)
