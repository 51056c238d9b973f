"""Prometheus metrics of one app instance, on their own registry (several apps can live in one process, e.g. in
tests). Served at /metrics.

Several server processes (``longrank serve --workers N``): the CLI sets ``PROMETHEUS_MULTIPROC_DIR`` to a fresh
directory before the workers start, prometheus-client then keeps every value in per-process files there, and
``Metrics.registry`` (what /metrics exposes) is a registry holding only a ``MultiProcessCollector``, so whichever
worker answers a scrape reports the sum over all of them. Gauges say how to combine processes: the in-flight gauge
sums live processes, the model gauge takes the max over LIVE processes. Info metrics are not supported in that mode,
so the model being served is the gauge ``longrank_model_info{version, variant} 1`` (the exposition an Info metric
had; no artifact path: it says nothing a scraper needs and shows the server's file layout); after a reload the
previous version's sample reads 0 in every worker, and the files of workers that died are reaped when a worker
starts, so a fleet that finished a reload shows one version at 1.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
MODEL_LABELS = ("version", "variant")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.045, 0.06, 0.1, 0.25, 0.5, 1.0, 2.5)


def multiprocess_dir() -> Path | None:
    """The multiprocess metrics directory when several workers share /metrics, else None."""
    value = os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower())
    return Path(value) if value else None


def reap_dead_workers(directory: Path) -> list[int]:
    """Drop the live-gauge files of processes that no longer run (e.g. a worker killed and restarted by uvicorn's
    supervisor), so that a live gauge does not keep their last values. Returns their pids."""
    pids = {int(m.group(1)) for p in directory.glob("gauge_live*.db") if (m := re.search(r"_(\d+)\.db$", p.name))}
    dead = []
    for pid in sorted(pids):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
            dead.append(pid)
        except PermissionError:
            pass  # alive, someone else's
    return dead


@dataclass
class ModelInfo:
    """The model being served as ``longrank_model_info{version, variant} 1`` (a gauge, so that it works
    with several worker processes; ``info()`` keeps the interface of prometheus-client's Info)."""

    gauge: Gauge
    current: tuple[str, ...] | None = field(default=None)

    def info(self, labels: dict[str, str]) -> None:
        values = tuple(str(labels.get(name, "")) for name in MODEL_LABELS)
        if self.current is not None and self.current != values:
            self.gauge.labels(*self.current).set(0)
        self.gauge.labels(*values).set(1)
        self.current = values


@dataclass
class Metrics:
    registry: CollectorRegistry  # what /metrics exposes
    requests: Counter
    latency: Histogram
    stage: Histogram
    candidates: Histogram
    events: Counter
    store_errors: Counter
    degraded: Counter
    explored: Counter
    model_info: ModelInfo
    in_flight: Gauge
    rejected: Counter

    @classmethod
    def create(cls) -> Metrics:
        r = CollectorRegistry()
        exposed = r
        shared = multiprocess_dir()
        if shared is not None:
            reap_dead_workers(shared)
            exposed = CollectorRegistry()
            multiprocess.MultiProcessCollector(exposed, path=str(shared))  # type: ignore[no-untyped-call]
        return cls(
            registry=exposed,
            requests=Counter("longrank_requests", "HTTP requests", ["route", "method", "status"], registry=r),
            latency=Histogram("longrank_request_seconds", "HTTP request latency", ["route", "method"],
                              buckets=LATENCY_BUCKETS, registry=r),
            stage=Histogram("longrank_stage_seconds", "duration of a ranking stage", ["stage"],
                            buckets=LATENCY_BUCKETS, registry=r),
            candidates=Histogram("longrank_candidates", "candidates per rank request",
                                 buckets=(1, 10, 50, 100, 200, 500, 1000, 2000, 5000), registry=r),
            events=Counter("longrank_events", "events posted", ["outcome"], registry=r),
            store_errors=Counter("longrank_store_errors", "store calls that failed", ["operation", "kind"],
                                 registry=r),
            degraded=Counter("longrank_degraded_responses", "rankings answered without the user's history",
                             registry=r),
            explored=Counter("longrank_explored_items", "items ranked with an exploration score", registry=r),
            model_info=ModelInfo(Gauge("longrank_model_info", "the model being served (1; 0 = replaced)",
                                       MODEL_LABELS, multiprocess_mode="livemax", registry=r)),
            in_flight=Gauge("longrank_inference_in_flight", "rank requests queued or running",
                            multiprocess_mode="livesum", registry=r),
            rejected=Counter("longrank_rank_rejected", "rank requests refused for overload (503)", ["reason"],
                             registry=r),
        )


class RequestMetrics:
    """Pure-ASGI middleware: request count and latency per route template, method and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(path, method, str(status)).inc()
            self.metrics.latency.labels(path, method).observe(time.perf_counter() - start)
