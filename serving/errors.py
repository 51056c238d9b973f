"""HTTP error mapping: every refusal is a JSON body {"error", "message", "field"?, "limit"?}."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from retrieval.store import InvalidEvent, StoreError, StoreUnavailable


class ApiError(Exception):
    """A refusal with a status code, raised from routes."""

    def __init__(self, status: int, error: str, message: str, *, field: str | None = None, limit: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.field, self.limit, self.headers = field, limit, headers

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.error, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.limit is not None:
            out["limit"] = self.limit
        return out


def _field_name(loc: Any) -> str:
    parts = [str(p) for p in loc if p != "body"]
    name = ""
    for p in parts:
        name += f"[{p}]" if p.isdigit() else (f".{p}" if name else p)
    return name or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors: list[dict[str, Any]] = [dict(e) for e in exc.errors()]
        first: dict[str, Any] = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
        field = _field_name(first.get("loc", ("body",)))
        body: dict[str, Any] = {
            "error": "invalid_request",
            "message": f"{field}: {first.get('msg')}",
            "field": field,
            "details": [{"field": _field_name(e.get("loc", ())), "message": e.get("msg")} for e in errors[:20]],
        }
        ctx: dict[str, Any] = first.get("ctx") or {}
        for key in ("le", "lt", "max_length", "ge", "gt", "min_length"):
            if key in ctx and isinstance(ctx[key], int):
                body["limit"] = ctx[key]
                break
        return JSONResponse(body, status_code=422)

    @app.exception_handler(InvalidEvent)
    async def _invalid_event(_: Request, exc: InvalidEvent) -> JSONResponse:
        field = f"events[{exc.row}].{exc.field}" if exc.row is not None else exc.field
        return JSONResponse(
            {"error": "invalid_event", "message": str(exc), "field": field, "rule": exc.rule}, status_code=422
        )

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(_: Request, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse({"error": "store_unavailable", "message": str(exc)}, status_code=503,
                            headers={"Retry-After": "1"})

    @app.exception_handler(StoreError)
    async def _store_error(_: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"error": "store_error", "message": str(exc)}, status_code=500)
