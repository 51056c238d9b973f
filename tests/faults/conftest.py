"""Fault injection (issue 11): a private redis-server per test (stack/redis_procs.py via the ``redis_server``
fixture), real artifacts, the service in-process (TestClient) or as `longrank serve --workers 2` processes, and a
small load generator that records every status and every acknowledged event.

What every fault test asserts: the status codes the API promises for the condition, 0 acknowledged events lost
(each is read back from Redis afterwards), and 0 5xx other than a 503 with Retry-After."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from models.testing import make_artifact
from retrieval.store import open_store

TS0 = 1_700_000_000
STORE_KINDS = {"store_unavailable", "store_timeout", "store_loading", "store_read_only", "store_full", "overloaded"}


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_artifact(tmp_path_factory.mktemp("fault-artifact") / "a")


@pytest.fixture(scope="session")
def other_artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_artifact(tmp_path_factory.mktemp("fault-artifact") / "b", seed=7)


def events(user: str, start: int, n: int, *, ids: bool = True) -> list[dict[str, Any]]:
    """n events of ``user`` with item ids start..start+n-1 (unique per user: how they are found again)."""
    return [{"user_id": user, "item_id": start + i, "category_id": (start + i) % 7, "ts": TS0 + start + i,
             "action": 1, **({"event_id": f"{user}-{start + i}"} if ids else {})} for i in range(n)]  # fmt: skip


def rank_body(user: str, n: int = 30) -> dict[str, Any]:
    return {"user_id": user, "candidates": [{"item_id": 10_000 + i, "category_id": i % 7} for i in range(n)]}


@dataclass
class Outcome:
    """What a load run saw."""

    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # the `error` of non-2xx bodies
    no_retry_after: int = 0  # 503s without Retry-After
    acked: dict[str, set[int]] = field(default_factory=dict)  # user -> item ids acknowledged
    connection_errors: int = 0  # no answer at all (a killed process): not acknowledged
    versions: Counter[str] = field(default_factory=Counter)  # model versions of 200 rankings
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, response: httpx.Response) -> None:
        with self.lock:
            self.statuses[response.status_code] += 1
            if response.status_code >= 400:
                body = response.json()
                assert set(body) <= {"error", "message", "field", "limit", "workers"}, body  # the documented body
                self.errors[body["error"]] += 1
                if response.status_code == 503 and "retry-after" not in response.headers:
                    self.no_retry_after += 1

    def assert_only_promised_statuses(self) -> None:
        server_errors = {s: n for s, n in self.statuses.items() if s >= 500 and s != 503}
        assert not server_errors, f"5xx other than 503: {server_errors} ({self.statuses})"
        assert self.no_retry_after == 0, "a 503 without Retry-After"
        assert set(self.errors) <= STORE_KINDS | {"model_unavailable"}, self.errors

    def acked_total(self) -> int:
        return sum(len(v) for v in self.acked.values())


class Load:
    """Writers (events with ids, one user each) and rankers hitting ``client`` until ``stop()``."""

    def __init__(self, client: Callable[[], Any], *, writers: int = 2, rankers: int = 1, batch: int = 10,
                 pause_s: float = 0.01) -> None:  # fmt: skip
        self.new_client = client
        self.outcome = Outcome()
        self.stop_event = threading.Event()
        self.batch, self.pause_s = batch, pause_s
        self.run_id = uuid.uuid4().hex[:6]
        self.threads = [threading.Thread(target=self._write, args=(f"w{self.run_id}-{i}",), daemon=True)
                        for i in range(writers)]  # fmt: skip
        self.threads += [threading.Thread(target=self._rank, args=(f"w{self.run_id}-0",), daemon=True)
                         for _ in range(rankers)]  # fmt: skip

    @property
    def users(self) -> list[str]:
        return sorted(self.outcome.acked)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> Outcome:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=60)
        return self.outcome

    def _call(self, client: Any, method: str, path: str, body: dict[str, Any]) -> httpx.Response | None:
        try:
            response: httpx.Response = client.request(method, path, json=body)
        except (httpx.TransportError, OSError):
            with self.outcome.lock:
                self.outcome.connection_errors += 1
            return None
        self.outcome.record(response)
        return response

    def _write(self, user: str) -> None:
        client = self.new_client()
        self.outcome.acked.setdefault(user, set())
        start = 0
        while not self.stop_event.is_set():
            batch = events(user, start, self.batch)
            start += self.batch
            response = self._call(client, "POST", "/v1/events", {"events": batch})
            if response is not None and response.status_code == 200:
                with self.outcome.lock:
                    self.outcome.acked[user].update(e["item_id"] for e in batch)
            elif response is None:
                client = self.new_client()  # a fresh connection, as a client would
            time.sleep(self.pause_s)

    def _rank(self, user: str) -> None:
        client = self.new_client()
        while not self.stop_event.is_set():
            response = self._call(client, "POST", "/v1/rank", rank_body(user))
            if response is not None and response.status_code == 200:
                with self.outcome.lock:
                    self.outcome.versions[response.json()["model_version"]] += 1
            elif response is None:
                client = self.new_client()
            time.sleep(self.pause_s)


def assert_nothing_acknowledged_was_lost(store_url: str, outcome: Outcome) -> None:
    """Every acknowledged event is in the store (read straight from Redis, not through the service)."""
    store = open_store(store_url)
    try:
        for user, items in outcome.acked.items():
            stored = set(store.read(user, recent=0, full=True).full["item_id"].tolist())  # type: ignore[index]
            lost = items - stored
            assert not lost, f"{len(lost)} of {len(items)} acknowledged events of {user} lost"
    finally:
        store.close()


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, step_s: float = 0.05) -> float:
    """Poll until ``predicate()``; returns the seconds it took (fails the test after ``timeout_s``)."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout_s:
            pytest.fail(f"{what}: not within {timeout_s} s")
        time.sleep(step_s)
    return time.monotonic() - start
