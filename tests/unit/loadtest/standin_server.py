"""A stand-in for the ranking service, for testing the load generator: `python standin_server.py PORT`.

`POST /v1/rank` answers by the number at the end of the body's user_id (so a test can predict every status from
the payloads it sent):
- n % 5 == 0 -> 503 after ~2 ms (an overloaded/degraded service);
- n % 7 == 1 -> 200 after SLOW seconds (env STANDIN_SLOW, default 1.5; longer than the tests' --timeout);
- otherwise  -> 200 after ~2 ms with a rank-shaped body.
`GET /stats` returns how many rank requests arrived; `GET /healthz` says it is up.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SLOW = float(os.environ.get("STANDIN_SLOW", "1.5"))
received = 0


def kind(user_id: str) -> str:
    """'503', 'slow' or '200' for a user id (shared with the tests through the same rule)."""
    n = int(re.search(r"(\d+)$", user_id).group(1))  # type: ignore[union-attr]
    if n % 5 == 0:
        return "503"
    if n % 7 == 1:
        return "slow"
    return "200"


async def rank(request: Request) -> JSONResponse:
    global received
    received += 1
    body = json.loads(await request.body())
    what = kind(body["user_id"])
    if what == "503":
        await asyncio.sleep(0.002)
        return JSONResponse({"error": "overloaded", "message": "stand-in says no"}, status_code=503)
    await asyncio.sleep(SLOW if what == "slow" else 0.002)
    items = [{"item_id": c["item_id"], "score": 0.5, "pctr": 0.5, "explored": False, "rank": r + 1}
             for r, c in enumerate(body["candidates"][: body.get("top_n", 10)])]
    return JSONResponse({"request_id": "x", "model_version": "standin", "degraded": False, "items": items})


async def stats(request: Request) -> JSONResponse:
    return JSONResponse({"rank": received})


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/v1/rank", rank, methods=["POST"]), Route("/stats", stats),
                        Route("/healthz", healthz)])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
