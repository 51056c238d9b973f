"""A pure-ASGI guard on request bodies: size and time.

- size: a declared ``Content-Length`` over ``LONGRANK_MAX_BODY_BYTES`` is refused with 413 before anything is read;
  a chunked body (no length) is counted as it arrives and refused with 413 the moment it passes the limit;
- time: the whole body must arrive within ``LONGRANK_BODY_TIMEOUT_S`` of the first read, else 408 (a client that
  sends half a request and stalls no longer holds a connection and a slot for as long as it likes).

Both are raised from inside the app's ``receive`` as ``starlette.exceptions.HTTPException`` subclasses, so they pass
through FastAPI's body parsing unchanged (it turns other exceptions into a 400) and are answered by the one error
handler (serving/errors.py) with the documented body.
"""

from __future__ import annotations

import asyncio
import time

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    kind = "body_too_large"
    field = "body"

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds the limit of {limit} bytes (LONGRANK_MAX_BODY_BYTES)")
        self.limit = limit


class BodyTimeout(HTTPException):
    kind = "body_timeout"
    field = "body"
    limit = None

    def __init__(self, timeout_s: float) -> None:
        super().__init__(408, f"the request body did not arrive within {timeout_s:g} s (LONGRANK_BODY_TIMEOUT_S)",
                         headers={"Connection": "close"})  # fmt: skip


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 10.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > self.max_bytes:
                    await self._refuse(send, BodyTooLarge(self.max_bytes))
                    return
        seen = 0
        deadline: float | None = None
        done = False
        started = False

        async def guarded_receive() -> Message:
            nonlocal seen, deadline, done
            if done:  # the body is read: later receives wait for a disconnect, unbounded
                return await receive()
            if deadline is None:
                deadline = time.monotonic() + self.timeout_s
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise BodyTimeout(self.timeout_s) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
                done = not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, tracking_send)
        except (BodyTooLarge, BodyTimeout) as exc:  # raised where no handler answered it
            if not started:
                await self._refuse(send, exc)

    async def _refuse(self, send: Send, exc: BodyTooLarge | BodyTimeout) -> None:
        body: dict[str, object] = {"error": exc.kind, "message": exc.detail, "field": "body"}
        if exc.limit is not None:
            body["limit"] = exc.limit
        payload = orjson.dumps(body)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        if exc.status_code == 408:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
