"""What `make compose-check` asks of a running stack, over HTTP to the ports it publishes on 127.0.0.1.

Each probe takes an ``httpx.Client`` and a base URL (``http://127.0.0.1:PORT``), prints one line of what it saw and
raises ``CheckFailed`` with what it expected and what it got. The stack's MovieLens user "1" is the subject:
``rank`` ranks five of its candidates, ``post_event`` adds a behaviour and sees the history grow by exactly it (and
a repeat acknowledged as a duplicate), ``event_still_there`` finds it again after restarts, ``locust_run`` drives a
bounded run through Locust's web API, ``prometheus_scrapes`` waits for the ranker's scrape target to be up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NoReturn

import httpx


class CheckFailed(RuntimeError):
    """One step of the check failed; the message says what was expected and what was seen."""

MAX_SHED = 0.25  # share of a load run's requests admission control may refuse (503 overloaded)


def fail(message: str) -> NoReturn:
    raise CheckFailed(message)


def poll(what: str, probe: Callable[[], bool], timeout_s: float, every_s: float = 1.0) -> None:
    """Call ``probe`` until it is true (HTTP errors count as not yet); CheckFailed after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except httpx.HTTPError:
            pass
        time.sleep(every_s)
    fail(f"{what}: not within {timeout_s:.0f} s")


def _json(response: httpx.Response, expect: int = 200) -> Any:
    if response.status_code != expect:
        fail(f"{response.request.method} {response.request.url}: HTTP {response.status_code} {response.text[:500]}")
    return response.json()


RANK_BODY = {"user_id": "1", "top_n": 3, "candidates": [
    {"item_id": 50, "category_id": 1}, {"item_id": 181, "category_id": 1}, {"item_id": 1, "category_id": 3},
    {"item_id": 1500, "category_id": 5}, {"item_id": 300, "category_id": 1}]}


def rank(http: httpx.Client, ranker: str) -> None:
    out = _json(http.post(f"{ranker}/v1/rank", json=RANK_BODY))
    ranks = [item["rank"] for item in out["items"]]
    if ranks != [1, 2, 3] or out["degraded"] or not all(0.0 <= item["pctr"] <= 1.0 for item in out["items"]):
        fail(f"unexpected ranking: {out}")
    print(f"   model {out['model_version']}: {[(i['item_id'], round(i['pctr'], 4)) for i in out['items']]}")


def _history(http: httpx.Client, ranker: str) -> dict[str, Any]:
    out: dict[str, Any] = _json(http.get(f"{ranker}/v1/users/1/behaviors", params={"limit": 1}))
    return out


def _is_newest(history: dict[str, Any], event: dict[str, Any]) -> bool:
    newest = history["behaviors"][-1] if history["behaviors"] else {}
    return (newest.get("item_id"), newest.get("ts")) == (event["item_id"], event["ts"])


def _repeat_is_duplicate(http: httpx.Client, ranker: str, event: dict[str, Any]) -> bool:
    return bool(_json(http.post(f"{ranker}/v1/events", json={"events": [event]})) == {"accepted": 0, "duplicates": 1})


def post_event(http: httpx.Client, ranker: str, event: dict[str, Any]) -> int:
    """Post ``event`` for user "1": the history grows by one and ends with it; the same event again is a duplicate.
    Returns the history's length after it."""
    before = _history(http, ranker)["length"]
    first = _json(http.post(f"{ranker}/v1/events", json={"events": [event]}))
    if first != {"accepted": 1, "duplicates": 0}:
        fail(f"the event was not accepted: {first}")
    after = _history(http, ranker)
    if after["length"] != before + 1 or not _is_newest(after, event):
        fail(f"the event does not count: length {before} -> {after['length']}, newest {after['behaviors'][-1:]}")
    if not _repeat_is_duplicate(http, ranker, event):
        fail("the same event_id again was not acknowledged as a duplicate")
    print(f"   user 1: {before} -> {after['length']} behaviours; the repeat acknowledged as a duplicate")
    return int(after["length"])


def event_still_there(http: httpx.Client, ranker: str, event: dict[str, Any], length: int) -> None:
    after = _history(http, ranker)
    if after["length"] != length or not _is_newest(after, event):
        fail(f"the event is lost: length {after['length']} (was {length}), newest {after['behaviors'][-1:]}")
    if not _repeat_is_duplicate(http, ranker, event):
        fail("the event_id is no longer known (a repeat was stored again)")
    print(f"   user 1 still has {length} behaviours, the newest the checked event; its event_id still a duplicate")


def locust_run(http: httpx.Client, locust: str, target: str, users: int, seconds: float) -> None:
    """Start a run of ``users`` users for ``seconds`` through Locust's web API, wait for its end, require requests,
    no failure and at most MAX_SHED of them shed by admission control (loadtest/locustfile.py marks those)."""
    poll("Locust's web UI answers", lambda: http.get(f"{locust}/").status_code == 200, 90)
    form = {"user_count": str(users), "spawn_rate": str(users), "host": target, "run_time": f"{seconds:.0f}s"}
    swarm = _json(http.post(f"{locust}/swarm", data=form))
    if not swarm.get("success"):
        fail(f"Locust refused the swarm: {swarm}")
    stats: dict[str, Any] = {}

    def stopped() -> bool:
        nonlocal stats
        stats = _json(http.get(f"{locust}/stats/requests"))
        return stats.get("state") == "stopped"

    poll("the Locust run ends", stopped, seconds + 60, every_s=2.0)
    total = stats["stats"][-1]  # "Aggregated"
    print(f"   {total['num_requests']} requests in {seconds:.0f} s ({total['num_requests'] / seconds:.1f} req/s), "
          f"{total['num_failures']} failed, median {total['median_response_time']} ms, "
          f"p95 {total.get('response_time_percentile_0.95')} ms")
    errors = stats.get("errors") or []
    shed = sum(e["occurrences"] for e in errors if str(e.get("error", "")).startswith("shed:"))
    other = [e for e in errors if not str(e.get("error", "")).startswith("shed:")]
    if total["num_requests"] == 0 or other:
        fail(f"the load run had no requests, or failures other than shedding: {other}")
    if shed > MAX_SHED * total["num_requests"]:
        fail(f"{shed} of {total['num_requests']} requests were shed (503 overloaded), over {MAX_SHED:.0%}")
    if shed:
        print(f"   {shed} shed by admission control (503 overloaded + Retry-After; at most {MAX_SHED:.0%} allowed): "
              "two paced users can meet on one worker, whose queue timeout is shorter than a ranking")


def prometheus_scrapes(http: httpx.Client, prometheus: str, job: str) -> None:
    query = f'up{{job="{job}"}}'

    def scraped() -> bool:
        out = http.get(f"{prometheus}/api/v1/query", params={"query": query})
        result = out.json()["data"]["result"] if out.status_code == 200 else []
        return bool(result) and result[0]["value"][1] == "1"

    poll(f"Prometheus scrapes the ranker ({query} == 1)", scraped, 90, every_s=2.0)
    print(f"   {query} == 1")
