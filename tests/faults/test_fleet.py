"""`longrank serve --workers 2` as a user runs it, against its own redis-server: a reload reaches every worker
(D4), a killed worker is replaced by one serving the reloaded model without losing an acknowledged event, and a
kill -9 of the master takes the workers with it so that a new master can bind the port and serve (D3).

The tests of this module run in order on one fleet (starting one costs seconds: each worker imports torch)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from stack.redis_procs import RedisProcess, free_port
from stack.run import child_pids
from tests.faults.conftest import Load, assert_nothing_acknowledged_was_lost, rank_body, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow]
TOKEN = "fleet-admin"
START_TIMEOUT_S = 120  # generous: workers import torch on a shared 2-core machine; the time is printed, not asserted


@dataclass
class Fleet:
    port: int
    store_url: str
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    started_in_s: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--workers", "2"],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        start = time.monotonic()
        wait_until(self.ready, START_TIMEOUT_S, f"the fleet on {self.url} serving (log {self.log})", step_s=0.1)
        self.started_in_s = time.monotonic() - start
        return self.started_in_s

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"longrank serve exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200 and len(self.workers()) == 2
        except httpx.HTTPError:
            return False

    def workers(self) -> list[int]:
        if self.proc is None:
            return []
        return sorted(p for p in child_pids(self.proc.pid) if b"spawn_main" in _cmdline(p))

    def stop(self) -> None:
        if self.proc is None:
            return
        workers = self.workers()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in workers:  # never leave a worker behind, whatever happened
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.proc = None


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, artifact_dir: Path) -> Iterator[Fleet]:
    directory = tmp_path_factory.mktemp("fleet")
    redis = RedisProcess(port=free_port(), dir=directory / "redis", args=("--save", "", "--appendonly", "yes",
                                                                          "--appendfsync", "always"))  # fmt: skip
    redis.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LONGRANK_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    port = free_port()
    env.update({"LONGRANK_STORE_URL": redis.url, "LONGRANK_ARTIFACT": str(artifact_dir), "LONGRANK_PORT": str(port),
                "LONGRANK_ADMIN_TOKEN": TOKEN, "LONGRANK_ACCESS_LOG": "false", "LONGRANK_LOG_LEVEL": "warning",
                "LONGRANK_QUEUE_TIMEOUT_S": "5", "LONGRANK_MAX_QUEUE": "64"})  # fmt: skip
    running = Fleet(port, redis.url, env, directory / "serve.log")
    try:
        seconds = running.start()
        print(f"\nfleet: 2 workers serving {seconds:.1f} s after `longrank serve` started")
        yield running
    finally:
        running.stop()
        redis.stop()


def _fresh_connection_versions(url: str, n: int) -> list[str]:
    """The model version each of ``n`` NEW connections is served (each may land on either worker)."""
    versions = []
    for _ in range(n):
        with httpx.Client(base_url=url, timeout=30) as client:
            r = client.post("/v1/rank", json=rank_body("nobody"))
            assert r.status_code == 200, r.text
            versions.append(r.json()["model_version"])
    return versions


def test_d4_a_reload_reaches_every_worker_before_it_answers(fleet: Fleet, other_artifact_dir: Path) -> None:
    """D4: a reload swapped the model of the worker that took the request only (28 of 40 new connections got the
    new model, 12 the old)."""
    before = set(_fresh_connection_versions(fleet.url, 10))
    assert len(before) == 1
    r = httpx.post(f"{fleet.url}/v1/admin/reload", json={"artifact": str(other_artifact_dir)},
                   headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)  # fmt: skip
    assert r.status_code == 200, r.text
    new = r.json()["model_version"]
    assert new not in before and r.json()["previous_version"] in before
    assert set(_fresh_connection_versions(fleet.url, 40)) == {new}  # the moment it answered: every worker
    assert sorted(w["pid"] for w in r.json()["workers"]) == fleet.workers()
    assert all(w["version"] == new and w["error"] is None for w in r.json()["workers"])
    for _ in range(6):  # whichever worker answers: one version
        assert httpx.get(f"{fleet.url}/readyz", timeout=10).json()["versions"] == [new]
    metrics = httpx.get(f"{fleet.url}/metrics", timeout=10).text
    served = [line for line in metrics.splitlines() if line.startswith("longrank_model_info{") and
              line.endswith(" 1.0")]  # fmt: skip
    assert len(served) == 1 and f'version="{new}"' in served[0]


def test_a_killed_worker_is_replaced_by_one_serving_the_reloaded_model(fleet: Fleet) -> None:
    reloaded = set(_fresh_connection_versions(fleet.url, 4))
    assert len(reloaded) == 1
    before = fleet.workers()
    victim = before[0]
    with Load(lambda: httpx.Client(base_url=fleet.url, timeout=30), writers=2, rankers=1) as load:
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: victim not in fleet.workers() and len(fleet.workers()) == 2, 60, "the worker replaced")
        wait_until(fleet.ready, START_TIMEOUT_S, "the replacement serving", step_s=0.1)
        time.sleep(0.5)
    outcome = load.outcome
    outcome.assert_only_promised_statuses()
    assert outcome.statuses[200] > 0 and outcome.acked_total() > 0
    assert set(outcome.versions) == reloaded  # no request was ever served by the start-up model again
    assert set(_fresh_connection_versions(fleet.url, 20)) == reloaded  # the replacement too
    assert_nothing_acknowledged_was_lost(fleet.store_url, outcome)


def test_d3_kill_9_of_the_master_takes_the_workers_and_a_new_master_serves(fleet: Fleet) -> None:
    """D3: after a kill -9 of the master both workers went on serving, unsupervised, holding the port, and a new
    `longrank serve` exited with [Errno 98] Address already in use."""
    assert fleet.proc is not None
    workers = fleet.workers()
    with Load(lambda: httpx.Client(base_url=fleet.url, timeout=30), writers=2, rankers=0) as load:
        time.sleep(0.3)
        fleet.proc.kill()  # SIGKILL: no chance to stop its workers
        fleet.proc.wait()
        gone = wait_until(lambda: not any(_alive(p) for p in workers), 30, "the orphaned workers exiting")
    print(f"\nfleet: workers gone {gone:.2f} s after the master's kill -9")
    restart = fleet.start()
    print(f"fleet: a new master served {restart:.1f} s after it started")
    assert sorted(set(fleet.workers()) & set(workers)) == []
    outcome = load.outcome
    outcome.assert_only_promised_statuses()
    assert_nothing_acknowledged_was_lost(fleet.store_url, outcome)
