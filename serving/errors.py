"""HTTP error mapping: every error the API answers — refusals, parse errors, store conditions, unknown routes, even
an internal error — is ONE JSON body ``{"error", "message", "field"?, "limit"?}`` (schemas.ErrorOut).

Status by cause:

- a body or parameter that breaks a rule: 422 (``invalid_request``, ``invalid_event``, ``limit_exceeded``,
  ``duplicate_candidate``); a body too large: 413; a body that does not arrive in time: 408; a token missing or
  wrong: 401; an unknown route or method: 404 / 405;
- a store condition (retrieval/errors.py): unreachable, timeout, loading, read-only, full -> 503 with Retry-After
  and the store error's ``kind`` as ``error``; a request the store refuses as such -> 422; any other store failure
  -> 503 ``store_error`` (logged with its traceback). Never a 500 for a store condition, and no message names a host
  (``StoreError.where`` goes to the log only);
- overload: 503 ``overloaded`` + Retry-After (serving/admission.py);
- anything else is a bug: 500 ``internal_error`` (uvicorn logs the traceback).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from retrieval.errors import InvalidEvent, StoreError, StoreRequestRefused, StoreUnavailable
from serving.logs import log_swallowed, note
from serving.requests import BodyError

log = logging.getLogger("longrank.errors")
HTTP_KINDS = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 408: "body_timeout", 413: "body_too_large", 415: "unsupported_media_type",
              422: "invalid_request", 429: "too_many_requests", 503: "unavailable"}  # fmt: skip
LIMIT_KEYS = ("le", "lt", "max_length", "ge", "gt", "min_length")


class ApiError(Exception):
    """A refusal with a status code, raised from routes."""

    def __init__(self, status: int, error: str, message: str, *, field: str | None = None, limit: int | None = None,
                 headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.field, self.limit, self.headers, self.extra = field, limit, headers, extra

    def body(self) -> dict[str, Any]:
        return error_body(self.error, self.message, field=self.field, limit=self.limit, **(self.extra or {}))


def error_body(error: str, message: str, *, field: str | None = None, limit: int | None = None,
               **extra: Any) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {"error": error, "message": message}
    if field is not None:
        out["field"] = field
    if limit is not None:
        out["limit"] = limit
    out.update(extra)
    return out


def respond(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    note(error=body["error"])
    return JSONResponse(body, status_code=status, headers=headers)


def store_response(exc: StoreError) -> JSONResponse:
    """The answer to a store condition (see the module docstring)."""
    if isinstance(exc, InvalidEvent):
        field = f"events[{exc.row}].{exc.field}" if exc.row is not None else exc.field
        return respond(422, error_body("invalid_event", str(exc), field=field))
    if isinstance(exc, StoreRequestRefused):
        return respond(422, error_body(exc.kind, str(exc)))
    if not isinstance(exc, StoreUnavailable):  # not a known condition: keep its traceback
        log_swallowed(log, "store", exc, where=exc.where)
    else:
        log.warning("store %s: %s", exc.kind, exc, extra={"fields": {"error_type": type(exc).__name__,
                                                                     "where": exc.where}})  # fmt: skip
    message = f"{exc}; retry in {exc.retry_after_s} s"
    return respond(503, error_body(exc.kind, message), headers={"Retry-After": str(exc.retry_after_s)})


def _field_name(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    name = ""
    for p in parts:
        name += f"[{p}]" if p.isdigit() else (f".{p}" if name else p)
    return name or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return respond(exc.status, exc.body(), exc.headers)

    @app.exception_handler(BodyError)
    async def _body_error(_: Request, exc: BodyError) -> JSONResponse:
        return respond(422, error_body(exc.error, str(exc), field=exc.field, limit=exc.limit))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors: list[dict[str, Any]] = [dict(e) for e in exc.errors()]
        first: dict[str, Any] = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
        if first.get("type") == "json_invalid":  # its loc is a byte offset, not a field
            return respond(422, error_body("invalid_request", f"body: not valid JSON ({first.get('msg')})",
                                           field="body"))  # fmt: skip
        field = _field_name(first.get("loc", ("body",)))
        ctx: dict[str, Any] = first.get("ctx") or {}
        limit = next((ctx[k] for k in LIMIT_KEYS if isinstance(ctx.get(k), int)), None)
        return respond(422, error_body("invalid_request", f"{field}: {first.get('msg')}", field=field, limit=limit))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = getattr(exc, "kind", None) or HTTP_KINDS.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else HTTP_KINDS.get(exc.status_code, "error")
        if exc.status_code == 400:  # FastAPI's "There was an error parsing the body" (too deep, bad bytes, ...)
            detail = f"body: cannot be parsed as JSON ({detail})"
        body = error_body(kind, detail, field=getattr(exc, "field", None), limit=getattr(exc, "limit", None))
        return respond(exc.status_code, body, dict(exc.headers) if exc.headers else None)

    @app.exception_handler(StoreError)
    async def _store_error(_: Request, exc: StoreError) -> JSONResponse:
        return store_response(exc)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        # Starlette's ServerErrorMiddleware calls this, then re-raises: the server logs the traceback once.
        return respond(500, error_body("internal_error", "internal error; the service log has the details"))
