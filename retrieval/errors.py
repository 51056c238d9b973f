"""The exceptions every behaviour store (and the impression counter and the exploration log's Redis sink) raises;
backend exceptions (sqlite3, redis-py) never leak raw.

    StoreError                  anything a store refuses or fails to do (an unknown backend failure: retry later)
    ├── StoreUnavailable        the store cannot serve now; retry later (HTTP 503 + Retry-After)
    │   ├── StoreTimeout        a connect or command timeout passed (the operation may or may not have applied)
    │   ├── StoreLoading        the server is loading its data set into memory (Redis LOADING)
    │   ├── StoreReadOnly       the store takes no writes (a Redis replica after a failover, a read-only file)
    │   └── StoreFull           the store is out of memory or disk (Redis OOM under maxmemory, SQLITE_FULL);
    │                           reads still work
    ├── StoreRequestRefused     the store refused what this request asked for (too big, ...): the client's fault
    ├── InvalidEvent            an event breaks a rule of the schema; the whole batch is rejected, nothing stored
    └── InvalidStoreURL         open_store() got a URL it cannot parse or a scheme it does not know

Messages never name a host, a port or a password (they reach HTTP clients); where the error happened is kept apart
in ``where`` (the redacted URL or file name), for the service's log. ``kind`` is the machine-readable name the API
answers with, ``retry_after_s`` the Retry-After it sends.
"""

from __future__ import annotations

from typing import Any


class StoreError(Exception):
    """Base of every store error."""

    kind = "store_error"
    retry_after_s = 1

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(message)
        self.where = where  # the redacted location (URL without password, file path): for logs, never for clients


class StoreUnavailable(StoreError):
    """The store cannot serve now (unreachable, refused the connection, ...)."""

    kind = "store_unavailable"


class StoreTimeout(StoreUnavailable):
    """A connect or command timeout passed."""

    kind = "store_timeout"


class StoreLoading(StoreUnavailable):
    """The server is loading its data set and answers nothing else yet."""

    kind = "store_loading"
    retry_after_s = 5


class StoreReadOnly(StoreUnavailable):
    """The store takes no writes (a read-only replica, a read-only file); reads still work."""

    kind = "store_read_only"
    retry_after_s = 5


class StoreFull(StoreUnavailable):
    """The store is out of memory (Redis over maxmemory with noeviction) or out of disk; reads still work."""

    kind = "store_full"
    retry_after_s = 30


class StoreRequestRefused(StoreError, ValueError):
    """The store refused this request's content (e.g. a value over the server's size limit): resending it as is
    will fail again."""

    kind = "store_request_refused"


class InvalidStoreURL(StoreError, ValueError):
    """A store URL that open_store() cannot use."""

    kind = "invalid_store_url"


class InvalidEvent(StoreError, ValueError):
    """An event that breaks a schema rule. ``row`` is its index in the batch (None for a whole column)."""

    kind = "invalid_event"

    def __init__(self, row: int | None, field: str, value: Any, rule: str) -> None:
        self.row = row
        self.field = field
        self.value = value
        self.rule = rule
        where = f"event {row}: " if row is not None else ""
        super().__init__(f"{where}{field}={value!r} is invalid: must be {rule}")
