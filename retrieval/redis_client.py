"""The one Redis client factory: the behaviour store, the impression counter and the exploration log's Redis Stream
all connect through ``open_redis`` and map errors through ``redis_errors``.

URL: ``redis://[user:password@]host:port[/db][?cluster=true&password_file=PATH&...]`` (``rediss://`` for TLS).

- cluster or not comes from the URL (``?cluster=true``): a ``RedisCluster`` seeded with the URL's node (the rest of
  the cluster is discovered on first use, so a service can start while the cluster is still down), else a
  ``redis.Redis``. A cluster has only database 0.
- the password: from the URL, from ``password`` (``LONGRANK_STORE_PASSWORD``), or from the file named by
  ``?password_file=PATH`` (first line), so that it need not appear on a command line (``ps``).
- timeouts are explicit (connect, command); a health check runs on a connection idle for 30 s.
- retries are explicit: redis-py retries nothing (``Retry(NoBackoff(), 0)``, on the cluster client too). The
  caller decides: ``RedisConnection.call(op, fn, idempotent=True)`` runs ``fn`` once more after a connection error
  (a stale pooled connection, a restarted server) when the connection allows ``retries`` (the store's normal
  connection: 1); the connection used inside the ranking read budget allows none, so a read costs at most the
  budget; appends are never retried (a lost reply may have applied; clients resend with event ids).
- errors: ``redis_errors(op)`` turns every redis-py exception into a ``retrieval.errors`` class (unreachable ->
  StoreUnavailable, timeout -> StoreTimeout, LOADING -> StoreLoading, READONLY -> StoreReadOnly, OOM ->
  StoreFull, a value over Redis' size limits -> StoreRequestRefused, anything else -> StoreError), with a message
  that names no host; the redacted URL rides along in ``StoreError.where`` for the service's log.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from retrieval.errors import (
    InvalidStoreURL,
    StoreError,
    StoreFull,
    StoreLoading,
    StoreReadOnly,
    StoreRequestRefused,
    StoreTimeout,
    StoreUnavailable,
)
from retrieval.store.factory import cluster_from_query

T = TypeVar("T")
HEALTH_CHECK_INTERVAL_S = 30


def redact_url(url: str) -> str:
    """The URL with any user/password replaced by ``***`` and without its query (safe for logs)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=netloc, query=""))


def is_redis_url(url: str) -> bool:
    return url.lower().startswith(("redis://", "rediss://"))


@dataclass(frozen=True)
class RedisTarget:
    """A parsed Redis URL: where to connect and how."""

    url: str  # scheme://[auth@]host:port[/db], no query (holds the password when the URL had one: never log it)
    safe_url: str  # the same without user/password: for logs
    cluster: bool
    password: str | None  # from password_file or the caller, when the URL has none
    ssl_cert_reqs: str | None

    @classmethod
    def parse(cls, url: str, *, password: str | None = None, cluster: bool | None = None) -> RedisTarget:
        parts = urlsplit(url)
        safe = redact_url(url)
        if parts.scheme.lower() not in {"redis", "rediss"}:
            raise InvalidStoreURL(f"Redis URL {safe!r} must start with redis:// or rediss://")
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise InvalidStoreURL(f"Redis URL {safe!r}: the path must be a database number, like /0")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        in_cluster = cluster_from_query(parts.query) if cluster is None else cluster
        if in_cluster and db not in {"", "0"}:
            raise InvalidStoreURL(f"Redis URL {safe!r}: a Redis Cluster has only database 0")
        secret = password
        if "password_file" in query:
            try:
                lines = Path(query["password_file"]).read_text().splitlines()
            except OSError as exc:
                raise InvalidStoreURL(f"Redis URL {safe!r}: password_file cannot be read ({exc.strerror})") from exc
            secret = lines[0] if lines else ""
        return cls(url=urlunsplit(parts._replace(query="")), safe_url=safe, cluster=in_cluster, password=secret,
                   ssl_cert_reqs=query.get("ssl_cert_reqs"))  # fmt: skip


def _classify(exc: BaseException) -> tuple[type[StoreError], str]:
    """The store error class and a host-free description of a redis-py exception."""
    text = str(exc)
    head = text.split(" ", 1)[0].upper()
    if isinstance(exc, redis.TimeoutError):
        return StoreTimeout, "the store did not answer in time"
    if isinstance(exc, redis.exceptions.BusyLoadingError) or head == "LOADING":
        return StoreLoading, "the store is loading its data set into memory"
    if isinstance(exc, redis.exceptions.AuthenticationError | redis.exceptions.AuthorizationError):
        return StoreUnavailable, "the store refused the credentials"
    if isinstance(exc, redis.ConnectionError):
        return StoreUnavailable, "the store cannot be reached"
    if isinstance(exc, redis.exceptions.ReadOnlyError) or head == "READONLY" or "-READONLY" in text:
        return StoreReadOnly, "the store is read-only (a replica) and takes no writes"
    if isinstance(exc, redis.exceptions.OutOfMemoryError) or head == "OOM" or "OOM command not allowed" in text:
        return StoreFull, "the store is out of memory (maxmemory) and takes no writes; reads still work"
    if isinstance(exc, redis.exceptions.ClusterDownError | redis.exceptions.TryAgainError) or head in {
        "BUSY", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "NOREPLICAS",
    }:  # fmt: skip
        return StoreUnavailable, "the store is busy or its cluster is not ready"
    if isinstance(exc, RedisClusterException):
        return StoreUnavailable, "the store's cluster cannot be reached"
    if isinstance(exc, redis.DataError) or "exceeds maximum allowed size" in text or "invalid bulk length" in text:
        return StoreRequestRefused, "the store refused the request as too large or malformed"
    return StoreError, f"the store failed ({type(exc).__name__})"


def store_error(exc: BaseException, op: str, where: str | None) -> StoreError:
    """``exc`` (a redis-py exception) as a retrieval.errors exception for operation ``op``."""
    cls, description = _classify(exc)
    return cls(f"{op}: {description}", where=where)


@contextmanager
def redis_errors(op: str, where: str | None = None) -> Iterator[None]:
    """Re-raise any redis-py exception as a StoreError subclass (see the module docstring)."""
    try:
        yield
    except StoreError:
        raise
    except (redis.RedisError, RedisClusterException) as exc:
        raise store_error(exc, op, where) from exc


class RedisConnection:
    """A Redis or Redis Cluster client with explicit timeouts and retry policy (see the module docstring)."""

    def __init__(self, target: RedisTarget, *, connect_timeout_s: float, command_timeout_s: float,
                 retries: int = 1) -> None:  # fmt: skip
        self.target = target
        self.retries = retries
        self.connect_timeout_s = connect_timeout_s
        self.command_timeout_s = command_timeout_s
        self._options: dict[str, Any] = {
            "socket_connect_timeout": connect_timeout_s,
            "socket_timeout": command_timeout_s,
            "decode_responses": False,
            "health_check_interval": HEALTH_CHECK_INTERVAL_S,
            "retry": Retry(NoBackoff(), 0),
        }
        if target.password is not None:
            self._options["password"] = target.password
        if target.ssl_cert_reqs is not None:
            self._options["ssl_cert_reqs"] = target.ssl_cert_reqs
        self._lock = threading.Lock()
        self._single: redis.Redis | None = None
        self._cluster: RedisCluster | None = None
        if not target.cluster:
            try:
                self._single = redis.Redis.from_url(target.url, **self._options)
            except ValueError as exc:
                raise InvalidStoreURL(f"Redis URL {target.safe_url!r}: {exc}") from exc

    @property
    def cluster(self) -> bool:
        return self.target.cluster

    @property
    def client(self) -> redis.Redis | RedisCluster:
        """The redis-py client; a cluster client is created on first use (it discovers the topology then)."""
        if self._single is not None:
            return self._single
        with self._lock:
            if self._cluster is None:
                try:
                    self._cluster = RedisCluster.from_url(self.target.url, **self._options)
                except ValueError as exc:
                    raise InvalidStoreURL(f"Redis URL {self.target.safe_url!r}: {exc}") from exc
                except (RedisClusterException, redis.RedisError) as exc:
                    raise store_error(exc, "connect", self.target.safe_url) from exc
            return self._cluster

    def errors(self, op: str) -> Any:
        return redis_errors(op, self.target.safe_url)

    def call(self, op: str, fn: Callable[[], T], *, idempotent: bool = False) -> T:
        """Run ``fn`` with the error mapping; an idempotent call is run once more after a connection error (not a
        timeout) when this connection allows retries."""
        attempts = 1 + (self.retries if idempotent else 0)
        for attempt in range(attempts):
            try:
                with self.errors(op):
                    return fn()
            except StoreTimeout:
                raise
            except StoreUnavailable as exc:
                if attempt + 1 >= attempts or type(exc) is not StoreUnavailable:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        if self._single is not None:
            self._single.close()
        elif self._cluster is not None:
            self._cluster.close()


def open_redis(url: str, *, connect_timeout_s: float = 1.0, command_timeout_s: float = 1.0, retries: int = 1,
               password: str | None = None, cluster: bool | None = None) -> RedisConnection:  # fmt: skip
    """A connection to the Redis (or Redis Cluster, ``?cluster=true``) named by ``url``."""
    target = RedisTarget.parse(url, password=password, cluster=cluster)
    return RedisConnection(target, connect_timeout_s=connect_timeout_s, command_timeout_s=command_timeout_s,
                           retries=retries)  # fmt: skip
