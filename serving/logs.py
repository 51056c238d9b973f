"""Logs: the standard ``logging`` module, ONE formatter, one line per record, on stderr.

- ``configure_logging(level, fmt)`` (called once per process by create_app): the root logger gets one handler with
  ``LogFormatter``; uvicorn's loggers lose their own handlers and propagate to it, so server and service lines look
  alike. ``LONGRANK_LOG_FORMAT=json`` (default) writes one JSON object a line; ``text`` the same fields as
  ``key=value`` after the message. ``LONGRANK_LOG_LEVEL`` sets the level.
- every record carries ``ts``, ``level``, ``logger``, ``message``, the request id of the request it belongs to (a
  context variable set by ``AccessLog``, carried into the inference threads), extra ``fields`` given by the caller,
  and ``error_type`` + ``traceback`` when it has an exception.
- ``AccessLog`` (pure ASGI): one ``longrank.access`` line per request — method, route, status, duration_ms,
  request_id, and what the route noted (``note(...)``): the user id HASHED (``hash_user``: blake2b, keyed by
  ``LONGRANK_LOG_SALT`` when set; a user id is never logged in clear), the model version, stage timings,
  degraded, explored, error type. ``LONGRANK_ACCESS_LOG=false`` turns the lines off (the request id still flows).
  The request id is the client's ``X-Request-ID`` when it is a valid id, else a new one; it is echoed in the
  ``X-Request-ID`` response header.
- ``log_swallowed(logger, site, exc)``: an exception the service handles without failing the request (a degraded
  read, an impression counter or exploration log that failed) is logged ONCE, with its traceback, where it is
  swallowed; repeats of the same (site, error type) within a second are counted and reported with the next line
  (``suppressed``), so an outage does not flood the log.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
THROTTLE_S = 1.0


@dataclass
class RequestContext:
    request_id: str
    fields: dict[str, Any] = field(default_factory=dict)


CURRENT: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("longrank_request", default=None)


def current_request_id() -> str | None:
    ctx = CURRENT.get()
    return ctx.request_id if ctx is not None else None


def note(**fields: Any) -> None:
    """Add fields to the access-log line of the current request (no-op outside a request)."""
    ctx = CURRENT.get()
    if ctx is not None:
        ctx.fields.update(fields)


def hash_user(user_id: str, salt: bytes = b"") -> str:
    """A stable pseudonym of a user id for logs: 16 hex digits of blake2b (keyed by the salt when given)."""
    return hashlib.blake2b(user_id.encode(), digest_size=8, key=salt[:64]).hexdigest()


class LogFormatter(logging.Formatter):
    """The one formatter: JSON lines (``json=True``) or ``message key=value ...`` text."""

    def __init__(self, json: bool = True) -> None:
        super().__init__()
        self.json = json

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id is not None:
            out["request_id"] = request_id
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            out.update({k: v for k, v in extra.items() if v is not None})
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            out["error_type"] = type(exc).__name__
            out["traceback"] = "".join(traceback.format_exception(exc)).rstrip()
        return out

    def format(self, record: logging.LogRecord) -> str:
        out = self.fields(record)
        if self.json:
            return orjson.dumps(out, default=str).decode()
        tb = out.pop("traceback", None)
        head = f"{out.pop('ts')} {out.pop('level').upper():7s} {out.pop('logger')}: {out.pop('message')}"
        rest = " ".join(f"{k}={v}" for k, v in out.items())
        return f"{head} {rest}".rstrip() + (f"\n{tb}" if tb else "")


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler on whatever ``sys.stderr`` is at the time of each record (tests swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _with_request_id(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        record.request_id = current_request_id()  # where the record is made: in the request's context
        return record

    make._longrank = True  # type: ignore[attr-defined]
    return make


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """One stderr handler with the one formatter on the root logger; uvicorn's loggers propagate to it; every
    record takes the current request id when it is made."""
    if not getattr(logging.getLogRecordFactory(), "_longrank", False):
        logging.setLogRecordFactory(_with_request_id(logging.getLogRecordFactory()))
    handler = _Stderr()
    handler.setFormatter(LogFormatter(json=fmt == "json"))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_longrank", False):
            root.removeHandler(old)
    handler._longrank = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # AccessLog writes the one access line


class _Throttle:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}

    def allow(self, key: tuple[str, str]) -> int | None:
        """None when this record is suppressed, else how many were suppressed before it."""
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -THROTTLE_S) < THROTTLE_S:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            self._last[key] = now
            return self._suppressed.pop(key, 0)


_THROTTLE = _Throttle()


def log_swallowed(logger: logging.Logger, site: str, exc: BaseException, **fields: Any) -> None:
    """Log an exception handled without failing the request, once, with its traceback (throttled per site)."""
    suppressed = _THROTTLE.allow((site, type(exc).__name__))
    if suppressed is None:
        return
    extra = {"site": site, **fields, "suppressed": suppressed or None}
    logger.warning("%s: %s", site, exc, exc_info=exc, extra={"fields": extra})


class AccessLog:
    """Pure-ASGI middleware: the request id context, the ``X-Request-ID`` header, one access line per request."""

    def __init__(self, app: ASGIApp, enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled
        self.log = logging.getLogger("longrank.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", [])).get(b"x-request-id", b"").decode("latin-1")
        ctx = RequestContext(given if ID_PATTERN.fullmatch(given) else uuid.uuid4().hex)
        token = CURRENT.set(ctx)
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", ctx.request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.enabled:
                route = getattr(scope.get("route"), "path", None) or scope.get("path", "")
                line = {"method": scope.get("method", ""), "route": route, "status": status,
                        "duration_ms": round((time.perf_counter() - start) * 1e3, 2), **ctx.fields}  # fmt: skip
                self.log.info("%s %s %d", scope.get("method", ""), route, status, extra={"fields": line})
            CURRENT.reset(token)
