"""Locust scenario for `POST /v1/rank`, with the same payloads as `longrank loadtest` (loadtest/payloads.py).

Run headless against a local service (Locust is in the `load` extra, installed in .venv by `make`):

    locust -f loadtest/locustfile.py --headless -u 50 -r 10 -t 60s --host http://127.0.0.1:8000

Environment: LONGRANK_LOAD_USERS (distinct user ids, default 943), LONGRANK_LOAD_CANDIDATES (candidates per
request, default 500), LONGRANK_LOAD_USER_PREFIX (default "u"; "" for the MovieLens demo's ids "1".."943"),
LONGRANK_LOAD_USER_RPS (requests per second of each simulated user; default 0 = no pacing, one request after
another).

Caveats, and why `longrank loadtest` is the tool for the latency numbers: Locust is CLOSED-loop (each simulated
user waits for its response before sending again), so when the service slows down the offered load drops with it
and queueing delay is hidden (coordinated omission); and it reports response times rounded to whole milliseconds.
Use Locust for a quick interactive look or a soak; use the open-loop generator for p99 at a given arrival rate.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from functools import cache

from locust import HttpUser, constant, constant_throughput, task

from loadtest.payloads import PayloadSpec, make_bodies

POOL = 256  # distinct bodies shared by all simulated users (generated once, on first use)
SHED = "shed: 503 overloaded"  # the failure message of a request refused by admission control


def _error_code(body: str) -> str | None:
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    return error if isinstance(error, str) else None


@cache
def _bodies() -> list[bytes]:
    spec = PayloadSpec(
        users=int(os.environ.get("LONGRANK_LOAD_USERS", "943")),
        candidates=int(os.environ.get("LONGRANK_LOAD_CANDIDATES", "500")),
        user_prefix=os.environ.get("LONGRANK_LOAD_USER_PREFIX", "u"),
    )
    return make_bodies(spec, POOL)


def _pacing() -> Callable[..., float]:
    """Locust's wait_time: LONGRANK_LOAD_USER_RPS requests per second per user, or none (0, the default)."""
    rps = float(os.environ.get("LONGRANK_LOAD_USER_RPS") or 0)
    return constant_throughput(rps) if rps > 0 else constant(0)


class RankUser(HttpUser):
    """Posts one rank request after another (paced by LONGRANK_LOAD_USER_RPS); non-2xx responses count as failures."""

    wait_time = _pacing()

    @task
    def rank(self) -> None:
        with self.client.post("/v1/rank", data=random.choice(_bodies()), name="/v1/rank",
                              headers={"content-type": "application/json"}, catch_response=True) as response:
            if response.status_code == 503 and _error_code(response.text) == "overloaded":
                # shed by admission control (503 + Retry-After): a failure of its own kind, told apart from errors
                response.failure(SHED)
