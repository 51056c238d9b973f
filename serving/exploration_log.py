"""The exploration log: one record per response ranked with exploration, for off-policy evaluation later
(``longrank export-log``).

Sinks (``LONGRANK_EXPLORE_LOG``):

- a file path (default ``./var/exploration.jsonl``): JSON Lines, appended under a lock and flushed per record, so
  a record is complete on disk when the response leaves (one ``write`` of one line; readers skip a torn last line);
- ``redis://...``: a Redis Stream (``LONGRANK_EXPLORE_LOG_STREAM``), ``XADD stream MAXLEN ~ N * record <json>``
  (approximate trimming keeps the stream near ``LONGRANK_EXPLORE_LOG_MAXLEN`` entries at little cost). The
  connection comes from ``retrieval.redis_client`` (``?cluster=true``, explicit timeouts, no retries: an outage
  costs an explored request at most one command timeout); a Redis error is raised as ExplorationLogError whose
  cause is the mapped store error (StoreFull, StoreUnavailable, ...).

Record fields (``RECORD_FIELDS``): request_id, ts (unix seconds, float), user_id, model_version, policy, params
(λ, dropout, samples, pgd_steps, budget, max_impressions, gate, propensity_draws), candidates (item ids, request
order), categories (null where absent), pctr (deterministic), explored_score (ŷ_e where the row moved, else pctr),
eligible (impression limit), order (candidate indices shown, best first), explored (flag per shown slot: put into
the slate by exploration), propensity (per shown slot: the probability that the policy shows that item there,
estimated from M Monte-Carlo draws of its randomness, replayable from the request id; null when logged without
draws), degraded.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from retrieval.errors import StoreError
from retrieval.redis_client import open_redis

RECORD_FIELDS = (
    "request_id", "ts", "user_id", "model_version", "policy", "params", "candidates", "categories", "pctr",
    "explored_score", "eligible", "order", "explored", "propensity", "degraded",
)  # fmt: skip


class ExplorationLogError(Exception):
    """A log record could not be written or read."""


class ExplorationLog(Protocol):
    def write(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def _check(record: dict[str, Any]) -> str:
    missing = [f for f in RECORD_FIELDS if f not in record]
    if missing:
        raise ExplorationLogError(f"exploration record lacks field(s) {missing}")
    return json.dumps(record, separators=(",", ":"))


class JsonlLog:
    """Appends with O_APPEND and ONE ``os.write`` per record (no user-space buffer), so records of several threads
    or server processes sharing the file never interleave; the lock serialises this process's threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd: int | None = None  # opened by the first record: a service that never explores writes no file
        self._closed = False

    def write(self, record: dict[str, Any]) -> None:
        data = (_check(record) + "\n").encode()
        with self._lock:
            if self._closed:
                raise ExplorationLogError(f"{self.path}: the exploration log is closed")
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class RedisStreamLog:
    def __init__(self, url: str, stream: str, maxlen: int, *, timeout_s: float = 1.0,
                 password: str | None = None) -> None:  # fmt: skip
        self.stream, self.maxlen = stream, maxlen
        self._redis = open_redis(url, connect_timeout_s=timeout_s, command_timeout_s=timeout_s, retries=0,
                                 password=password)  # fmt: skip

    def write(self, record: dict[str, Any]) -> None:
        data = _check(record)
        try:
            self._redis.call("exploration log XADD", lambda: self._redis.client.xadd(
                self.stream, {"record": data}, maxlen=self.maxlen, approximate=True))  # fmt: skip
        except StoreError as exc:
            raise ExplorationLogError(f"exploration log stream {self.stream!r}: {exc}") from exc

    def close(self) -> None:
        self._redis.close()


def open_exploration_log(target: str, stream: str = "longrank:exploration", maxlen: int = 1_000_000, *,
                         timeout_s: float = 1.0, password: str | None = None) -> ExplorationLog:  # fmt: skip
    """A Redis Stream sink for ``redis://``/``rediss://`` targets, else a JSONL file at the path ``target``."""
    if target.lower().startswith(("redis://", "rediss://")):
        return RedisStreamLog(target, stream, maxlen, timeout_s=timeout_s, password=password)
    return JsonlLog(target)


def read_records(source: str, stream: str = "longrank:exploration") -> Iterator[dict[str, Any]]:
    """Every record of a JSONL file or a Redis Stream, oldest first (a torn last line of a file is skipped)."""
    if source.lower().startswith(("redis://", "rediss://")):
        connection = open_redis(source, connect_timeout_s=5.0, command_timeout_s=30.0)
        client = connection.client
        try:
            last = "-"
            while True:
                with connection.errors("exploration log XRANGE"):
                    entries: list[Any] = client.xrange(stream, min=last, count=1000)  # type: ignore[assignment]
                if last != "-":
                    entries = entries[1:]  # `min` is inclusive: drop the entry already yielded
                if not entries:
                    return
                for _entry_id, fields in entries:
                    yield json.loads(fields[b"record"])
                last = entries[-1][0].decode()
        finally:
            connection.close()
    path = Path(source)
    if not path.is_file():
        raise ExplorationLogError(f"--log {source}: no such file")
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                if not line.endswith("\n"):  # a torn last line (a writer died mid-write)
                    return
                raise ExplorationLogError(f"{source}:{number}: not a JSON record ({exc})") from exc
