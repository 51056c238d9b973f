"""Open-loop load generator: requests arrive at a constant rate whether or not earlier ones have finished.

Request ``i`` is due at ``t0 + i / rate`` on the event loop clock. The generator sleeps until that moment, hands the
request to httpx (HTTP/1.1, ``connections`` keep-alive connections split over small clients, see ``_drive``) and
moves on; it never waits for a response before sending the next request. Latency is measured from the *scheduled*
time to the end of the response body, so time spent queued behind a busy connection pool or a slow server counts:
there is no coordinated omission (a closed-loop tool such as Locust slows down with the server and under-reports
the tail).

Statistics:
- the first ``warmup`` seconds of requests are sent but left out of every number;
- latency percentiles (nearest rank) use the successful (2xx) responses only, so a fast 503 cannot make the service
  look quick; failures are reported separately in ``errors`` (timeouts + connection errors + 5xx) and
  ``status_counts`` (``{"200": n, "503": m, "timeout": t, "error": e}``; 4xx appear there but are not ``errors``);
  ``shed_p50_ms`` / ``shed_p99_ms``: how fast the 503s (load shed) came back (None without a 503);
- ``achieved_rps`` counts responses with any HTTP status (not timeouts or connection errors) per measured second;
- ``generator_lag_ms`` is how late the generator itself sent each request (a busy client machine shows here, not
  as server latency); ``late_sends`` counts those more than ``LATE_MS`` late.

A run is bounded: every request has a deadline ``scheduled + timeout`` (it then counts as a timeout), so a run ends
by ``warmup + duration + timeout`` after it starts. Only loopback targets are accepted unless ``allow_remote``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import ssl
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

import httpx
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from loadtest.payloads import DEFAULT_POOL, PayloadSpec, make_bodies

#: A send this much later than its scheduled time counts as a late send (the loop clock resolution is ~1 ms).
LATE_MS = 5.0
#: Percentiles reported, as (field name, q in percent).
PERCENTILES: tuple[tuple[str, float], ...] = (("p50_ms", 50.0), ("p95_ms", 95.0), ("p99_ms", 99.0),
                                              ("p999_ms", 99.9))
SHARD = 8  # keep-alive connections per httpx client (see _drive)
MAX_REQUESTS = 50_000_000  # per run: bounds memory (three numbers per request) and the run's length
TIMEOUT = -1  # status code recorded for a request that hit its deadline
CONN_ERROR = -2  # status code recorded for a connection/protocol error
_HEADERS = {"content-type": "application/json", "accept": "application/json"}


class RemoteTargetError(ValueError):
    """The target URL is not a loopback address and remote load was not allowed."""


def check_target(url: str, allow_remote: bool = False) -> str:
    """Validate ``url`` (http/https with a host) and return it; refuse non-loopback hosts unless ``allow_remote``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--url must be an http:// or https:// URL with a host (got {url!r})")
    host = parts.hostname
    if allow_remote or host == "localhost":
        return url
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False  # a name other than localhost: not resolved, so not trusted to be local
    if not loopback:
        raise RemoteTargetError(
            f"refusing to send load to {url!r}: host {host!r} is not a loopback address (127.0.0.0/8, ::1, "
            "localhost). This workplace forbids load against other addresses; pass --allow-remote only for a "
            "host you are allowed to load."
        )
    return url


@dataclass(frozen=True)
class LoadConfig:
    """One open-loop run: where, how fast, how long, and what to send."""

    url: str
    rate: float
    duration: float
    warmup: float = 5.0
    timeout: float = 2.0
    connections: int = 64
    path: str = "/v1/rank"
    payload: PayloadSpec = field(default_factory=PayloadSpec)
    allow_remote: bool = False

    def __post_init__(self) -> None:
        checks: list[tuple[str, float, float, float]] = [
            ("rate", self.rate, 1e-3, 100_000.0),
            ("duration", self.duration, 1e-3, 86_400.0),
            ("warmup", self.warmup, 0.0, 3_600.0),
            ("timeout", self.timeout, 1e-3, 600.0),
            ("connections", self.connections, 1, 10_000),
        ]
        for name, value, low, high in checks:
            if not (math.isfinite(value) and low <= value <= high):
                raise ValueError(f"--{name} must be between {low:g} and {high:g} (got {value})")
        if self.measured_requests < 1:
            raise ValueError(f"--rate x --duration must give at least 1 request (got {self.rate} x {self.duration})")
        if self.total_requests > MAX_REQUESTS:
            raise ValueError(
                f"--rate x (--warmup + --duration) must be <= {MAX_REQUESTS} requests (got {self.total_requests})"
            )
        if not self.path.startswith("/"):
            raise ValueError(f"--path must start with '/' (got {self.path!r})")
        check_target(self.url, self.allow_remote)

    @property
    def target(self) -> str:
        return self.url.rstrip("/") + self.path

    @property
    def warmup_requests(self) -> int:
        return round(self.rate * self.warmup)

    @property
    def measured_requests(self) -> int:
        return round(self.rate * self.duration)

    @property
    def total_requests(self) -> int:
        return self.warmup_requests + self.measured_requests


@dataclass
class RunOutcome:
    """A finished run: the summary (the JSON the CLI prints) and the raw per-request arrays of the measured part."""

    summary: dict[str, object]
    latency_ms: npt.NDArray[np.float64]  # scheduled -> response end; NaN for timeouts and errors
    status: npt.NDArray[np.int32]  # HTTP status, TIMEOUT or CONN_ERROR
    lag_ms: npt.NDArray[np.float64]  # how late the generator sent each request

    @property
    def ok_latency_ms(self) -> npt.NDArray[np.float64]:
        """Latencies of the 2xx responses (what the percentiles are computed over)."""
        return self.latency_ms[(self.status >= 200) & (self.status < 300)]


def percentiles(values: Sequence[float] | npt.NDArray[np.float64], qs: Sequence[float]) -> list[float | None]:
    """Nearest-rank percentiles (the smallest value with at least q% of the values at or below it); None if empty."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return [None for _ in qs]
    return [float(v) for v in np.percentile(data, list(qs), method="inverted_cdf")]


def status_key(code: int) -> str:
    """The ``status_counts`` key of a recorded status code."""
    if code == TIMEOUT:
        return "timeout"
    if code == CONN_ERROR:
        return "error"
    return str(code)


def summarize(config: LoadConfig, latency_ms: npt.NDArray[np.float64], status: npt.NDArray[np.int32],
              lag_ms: npt.NDArray[np.float64]) -> dict[str, object]:
    """The run summary from the measured requests' arrays (warm-up already removed)."""
    ok = (status >= 200) & (status < 300)
    counts = Counter(status_key(int(code)) for code in status)
    timeouts = int(np.count_nonzero(status == TIMEOUT))
    conn_errors = int(np.count_nonzero(status == CONN_ERROR))
    server_errors = int(np.count_nonzero(status >= 500))
    answered = int(np.count_nonzero(status > 0))
    summary: dict[str, object] = {
        "url": config.target,
        "offered_rps": round(status.size / config.duration, 3),
        "achieved_rps": round(answered / config.duration, 3),
    }
    for (name, _), value in zip(PERCENTILES, percentiles(latency_ms[ok], [q for _, q in PERCENTILES]), strict=True):
        summary[name] = None if value is None else round(value, 3)
    shed = percentiles(latency_ms[status == 503], [50.0, 99.0])
    summary.update(
        {
            "shed_p50_ms": None if shed[0] is None else round(shed[0], 3),
            "shed_p99_ms": None if shed[1] is None else round(shed[1], 3),
            "errors": timeouts + conn_errors + server_errors,
            "status_counts": dict(sorted(counts.items())),
            "ok": int(np.count_nonzero(ok)),
            "requests": int(status.size),
            "duration_s": config.duration,
            "warmup_s": config.warmup,
            "warmup_requests": config.warmup_requests,
            "timeout_s": config.timeout,
            "connections": config.connections,
            "candidates": config.payload.candidates,
            "generator_lag_p99_ms": round(percentiles(lag_ms, [99.0])[0] or 0.0, 3),
            "late_sends": int(np.count_nonzero(lag_ms > LATE_MS)),
        }
    )
    return summary


async def _drive(config: LoadConfig, bodies: Sequence[bytes], on_done: Callable[[], None]) -> tuple[
        npt.NDArray[np.float64], npt.NDArray[np.int32], npt.NDArray[np.float64]]:
    """Send every request on schedule; return (latency_ms, status, lag_ms) for all requests, warm-up included."""
    total = config.total_requests
    latency = np.full(total, np.nan)
    status = np.zeros(total, dtype=np.int32)
    lag = np.zeros(total)
    loop = asyncio.get_running_loop()
    target = config.target
    # The keep-alive pool is split over several small httpx clients, and a request first takes a free slot (the
    # index of a client with an idle connection) from a queue: httpcore's pool does work quadratic in its size on
    # every request, so one pool of 64 would make the generator itself the bottleneck. Waiting for a slot still
    # counts: latency runs from the scheduled time.
    sizes = [len(part) for part in np.array_split(np.arange(config.connections), -(-config.connections // SHARD))]
    free: asyncio.Queue[int] = asyncio.Queue()
    for shard, size in enumerate(sizes):
        for _ in range(size):
            free.put_nowait(shard)

    async def one(clients: list[httpx.AsyncClient], i: int, scheduled: float) -> None:
        try:
            async with asyncio.timeout_at(scheduled + config.timeout):
                shard = await free.get()
                try:
                    response = await clients[shard].post(target, content=bodies[i % len(bodies)], headers=_HEADERS)
                finally:
                    free.put_nowait(shard)
            status[i] = response.status_code
            latency[i] = (loop.time() - scheduled) * 1e3
        except (TimeoutError, httpx.TimeoutException):
            status[i] = TIMEOUT
        except (httpx.HTTPError, OSError):
            status[i] = CONN_ERROR
        finally:
            on_done()

    async with contextlib.AsyncExitStack() as stack:
        # trust_env=False: never route through a proxy from the environment; the load goes to the given URL only.
        tls = ssl.create_default_context()  # one context for all clients (each would load the CA bundle again)
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                timeout=config.timeout, trust_env=False, verify=tls))
            for size in sizes
        ]
        pending: set[asyncio.Task[None]] = set()
        t0 = loop.time() + 0.01
        for i in range(total):
            scheduled = t0 + i / config.rate
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            lag[i] = max(0.0, (loop.time() - scheduled) * 1e3)
            task = asyncio.create_task(one(clients, i, scheduled))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)
    return latency, status, lag


def run_load(config: LoadConfig, bodies: Sequence[bytes] | None = None, progress: bool | None = None) -> RunOutcome:
    """Run one open-loop load test and summarize its measured part.

    ``bodies`` defaults to a pre-generated pool from ``config.payload``; request ``i`` sends ``bodies[i % len]``.
    ``progress``: a tqdm bar on stderr (None: only when stderr is a terminal).
    """
    if bodies is None:
        bodies = make_bodies(config.payload, min(config.total_requests, DEFAULT_POOL))
    if not bodies:
        raise ValueError("bodies must not be empty")
    bar = tqdm(total=config.total_requests, desc=f"{config.rate:g} rps", unit="req", file=sys.stderr,
               disable=None if progress is None else not progress, leave=False)
    try:
        latency, status, lag = asyncio.run(_drive(config, bodies, lambda: bar.update(1)))
    finally:
        bar.close()
    measured = slice(config.warmup_requests, config.total_requests)
    latency, status, lag = latency[measured], status[measured], lag[measured]
    return RunOutcome(summarize(config, latency, status, lag), latency, status, lag)


SUSTAINED_P99_MS = 60.0  # a rate is sustained when its 2xx p99 is at most this ...
SUSTAINED_OK = 0.999  # ... and at least this share of its requests were answered 2xx


def sustained_rps(summaries: Sequence[Mapping[str, object]], p99_ms: float = SUSTAINED_P99_MS,
                  min_ok: float = SUSTAINED_OK) -> float | None:  # fmt: skip
    """The highest offered rate of a sweep whose 2xx p99 is <= ``p99_ms`` with >= ``min_ok`` of its requests 2xx
    (None when no rate qualifies). Each rate is judged on its own: a sweep is not assumed to degrade monotonically."""
    best: float | None = None
    for summary in summaries:
        p99, ok, requests = summary.get("p99_ms"), summary.get("ok"), summary.get("requests")
        if not isinstance(p99, (int, float)) or not isinstance(ok, int) or not isinstance(requests, int):
            continue
        rate = summary.get("offered_rps")
        if requests > 0 and p99 <= p99_ms and ok / requests >= min_ok and isinstance(rate, (int, float)):
            best = float(rate) if best is None else max(best, float(rate))
    return best


def sweep(config: LoadConfig, rates: Sequence[float], progress: bool | None = None) -> list[RunOutcome]:
    """Run ``config`` once per rate, lowest first, with the same payloads; return the outcomes in rate order."""
    if not rates:
        raise ValueError("--rates must list at least one rate")
    configs = [replace(config, rate=float(rate)) for rate in sorted(rates)]
    bodies = make_bodies(config.payload, min(max(c.total_requests for c in configs), DEFAULT_POOL))
    return [run_load(c, bodies, progress) for c in configs]
