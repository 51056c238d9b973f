"""POST /v1/explain (serving/explain.py) and the explainer page at /ui (static files in serving/ui/).

The body is /v1/rank's (serving/requests.py), at most LONGRANK_MAX_EXPLAIN_CANDIDATES candidates. The answer shows
a user's behaviours, so the route is guarded like the user-data endpoints: it needs
``Authorization: Bearer $LONGRANK_DATA_TOKEN`` (or the admin token) whenever either token is set. The work runs in
the inference executor, like a ranking, so the thread budget holds; it is not admitted by the rank queue (an
operator's tool, not traffic). The page is plain HTML, CSS and one script with SVG drawing: no build step, no
external resource, so it works offline; LONGRANK_UI_ENABLED=false leaves /ui unmounted (404).
"""

from __future__ import annotations

import asyncio
import contextvars
from pathlib import Path
from typing import Annotated

import orjson
from fastapi import APIRouter, FastAPI, Header, Request, Response
from fastapi.staticfiles import StaticFiles

from serving.api_rank import read_json_body, start_request
from serving.auth import require_data_token
from serving.explain import explain
from serving.explain_schemas import ExplainOut
from serving.logs import note
from serving.model_state import LoadedModel
from serving.requests import UNKNOWN_CATEGORY, RankRequest, RequestDecoders, request_body
from serving.schemas import JSON_BODY_ERRORS, ErrorOut
from serving.settings import Settings
from serving.state import ServiceState

UI_DIR = Path(__file__).parent / "ui"
router = APIRouter()


def install(app: FastAPI, settings: Settings) -> None:
    """Register /v1/explain (with its own candidate limit) and, unless switched off, mount the page at /ui."""
    app.state.explain_decoders = RequestDecoders(settings.max_explain_candidates, settings.max_events_per_batch,
                                                 candidates_variable="LONGRANK_MAX_EXPLAIN_CANDIDATES")  # fmt: skip
    app.include_router(router)
    if settings.ui_enabled:
        app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")


def _render(state: ServiceState, model: LoadedModel, body: RankRequest, top_n: int, request_id: str) -> bytes:
    """Runs in the inference executor."""
    explained = explain(state.ranker, model, body.user_id, body.items, body.cats, top_n,
                        unknown_category=UNKNOWN_CATEGORY)  # fmt: skip
    note(model_version=model.version, degraded=explained.degraded or None)
    return orjson.dumps({"request_id": request_id, **explained.payload})


@router.post(
    "/v1/explain",
    response_model=ExplainOut,
    tags=["explain"],
    openapi_extra=request_body("RankRequest"),
    responses={
        401: {"model": ErrorOut, "description": "LONGRANK_DATA_TOKEN (or the admin token) is set: send it"},
        **JSON_BODY_ERRORS,
        503: {"model": ErrorOut, "description": "no model loaded"},
    },
)
async def post_explain(request: Request, authorization: Annotated[str | None, Header()] = None) -> Response:
    """Why this ranking: /v1/rank's body (at most LONGRANK_MAX_EXPLAIN_CANDIDATES candidates; `explore` is ignored,
    the explanation is of the model's pCTR) → per candidate, best first: `pctr` (equal to /v1/rank's for the same
    request), the behaviours the GSU retrieved (position in the whole history, item, category, time, age, action,
    the search that found each: `category`, `item` or `soft`) with the ESU attention weight of each (mean over
    heads and per head), the short branch's attention over the last S behaviours, the history statistics the model
    reads (by name), and `long_contribution` = `pctr` − `score_short_only`, where `score_short_only` is the score
    the same model gives when the user's history is only its last S (= short_len) behaviours. Needs `Authorization:
    Bearer $LONGRANK_DATA_TOKEN` (or the admin token) when either token is set."""
    settings: Settings = request.app.state.settings
    require_data_token(authorization, settings.data_token, settings.admin_token)  # as for the user-data endpoints
    decoders: RequestDecoders = request.app.state.explain_decoders
    body = decoders.rank(await read_json_body(request))
    state: ServiceState = request.app.state.service
    request_id, model = start_request(state, body)
    top_n = min(body.top_n or len(body.items), len(body.items))
    context = contextvars.copy_context()
    payload = await asyncio.get_running_loop().run_in_executor(
        state.executor, context.run, _render, state, model, body, top_n, request_id
    )
    return Response(payload, media_type="application/json")
