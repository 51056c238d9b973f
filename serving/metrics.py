"""Prometheus metrics of one app instance, on their own registry (several apps can live in one process, e.g. in
tests). Served at /metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.045, 0.06, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    stage: Histogram
    candidates: Histogram
    events: Counter
    store_errors: Counter
    degraded: Counter
    explored: Counter
    model_info: Info
    in_flight: Gauge

    @classmethod
    def create(cls) -> Metrics:
        r = CollectorRegistry()
        return cls(
            registry=r,
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
            model_info=Info("longrank_model", "the model being served", registry=r),
            in_flight=Gauge("longrank_inference_in_flight", "rank requests queued or running", registry=r),
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
