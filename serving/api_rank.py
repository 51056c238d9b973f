"""POST /v1/rank: decode (serving/requests.py: straight from the bytes, limits before the work, the list or the
columnar form), admit by count and by time (serving/admission.py: 503 + Retry-After at once when the request would
wait too long), rank off the event loop in the bounded inference executor, answer with a Server-Timing header of
the stage durations. The response is serialised once, with orjson, in the executor.

Duplicate candidates are refused (422 naming the first repeated position): a ranking has one slot per item.

Exploration (AGE): a request is explored when it says ``"explore": true``, or, when it says nothing, with
probability ``LONGRANK_EXPLORE_FRACTION``; ``LONGRANK_EXPLORE_ENABLED=false`` (the kill switch) turns it off for
every request. An explored response flags its explored items (at most ``LONGRANK_EXPLORE_BUDGET`` inside top_n) and
is logged to the exploration log (serving/exploration_log.py) before it is sent.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
import uuid

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response

from models.bandits.served import policy_params
from serving.admission import Admission, Overloaded, Ticket
from serving.errors import ApiError
from serving.exploration_log import ExplorationLogError
from serving.logs import CURRENT, log_swallowed, note
from serving.model_state import LoadedModel
from serving.pipeline import ExplorePolicy, Ranked
from serving.requests import RankRequest, RequestDecoders, request_body
from serving.schemas import JSON_BODY_ERRORS, ErrorOut, RankOut
from serving.state import ServiceState

router = APIRouter()
log = logging.getLogger("longrank.rank")


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


async def read_json_body(request: Request) -> bytes:
    """The raw body of a JSON request (size and time are guarded by serving/limits.py); 415 for another type."""
    kind = request.headers.get("content-type", "application/json").split(";", 1)[0].strip().lower()
    if kind and kind != "application/json" and not kind.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", f"content-type: {kind} is not application/json",
                       field="content-type")  # fmt: skip
    return await request.body()


def start_request(state: ServiceState, body: RankRequest) -> tuple[str, LoadedModel]:
    """What /v1/rank and /v1/explain do first with a decoded body: its request id (the body's, else the log
    context's, else a new one; set on the log context), the user and size noted in the request log, and the model
    (503 model_unavailable when none is loaded)."""
    ctx = CURRENT.get()
    request_id = body.request_id or (ctx.request_id if ctx is not None else uuid.uuid4().hex)
    if ctx is not None:
        ctx.request_id = request_id
    note(user=state.user_hash(body.user_id), candidates=len(body.items))
    model = state.model
    if model is None:
        raise ApiError(503, "model_unavailable", "no model is loaded (set LONGRANK_ARTIFACT)",
                       headers={"Retry-After": "5"})  # fmt: skip
    return request_id, model


def explore_policy(state: ServiceState, asked: bool | None) -> ExplorePolicy | None:
    """The policy when this request is explored, else None (kill switch, per-request flag, traffic fraction)."""
    s = state.settings
    if not s.explore_enabled:
        return None
    wanted = asked if asked is not None else (s.explore_fraction > 0 and random.random() < s.explore_fraction)
    if not wanted:
        return None
    params = policy_params(s.explore_policy, s.explore_lambda, s.explore_dropout, s.explore_samples,
                           s.explore_pgd_steps)  # fmt: skip
    return ExplorePolicy(params, budget=s.explore_budget, max_impressions=s.explore_max_impressions,
                         propensity_draws=s.explore_propensity_draws, name=s.explore_policy)


def log_record(body: RankRequest, items: np.ndarray, ranked: Ranked, request_id: str) -> dict[str, object]:
    """The exploration log record of an explored response (fields: serving.exploration_log.RECORD_FIELDS)."""
    assert ranked.explored_score is not None and ranked.eligible is not None
    order = ranked.order.tolist()
    return {
        "request_id": request_id, "ts": time.time(), "user_id": body.user_id, "model_version": ranked.model_version,
        "policy": (ranked.exploration or {}).get("policy"), "params": ranked.exploration,
        "candidates": items.tolist(), "categories": body.categories(),
        "pctr": ranked.pctr.tolist(), "explored_score": ranked.explored_score.tolist(),
        "eligible": ranked.eligible.tolist(), "order": order, "explored": ranked.explored[order].tolist(),
        "propensity": None if ranked.propensity is None else ranked.propensity.tolist(), "degraded": ranked.degraded,
    }  # fmt: skip


def _render(state: ServiceState, model: LoadedModel, body: RankRequest, top_n: int, request_id: str,
            policy: ExplorePolicy | None, ticket: Ticket) -> tuple[bytes, str, float]:
    """Runs in the inference executor: refuse when the request waited too long for its slot, else rank, log an
    explored response, serialise (all off the event loop). Returns the body, the timings and the time it held the
    slot."""
    start = state.admission.check_wait(ticket)
    items, cats = body.items, body.cats
    ranked = state.ranker.rank(model, body.user_id, items, cats, top_n, explore_policy=policy, request_id=request_id)
    if ranked.exploration is not None and state.exploration_log is not None:
        try:
            state.exploration_log.write(log_record(body, items, ranked, request_id))
        except (OSError, ExplorationLogError) as exc:  # the response still goes out; the loss is counted
            state.metrics.store_errors.labels("exploration_log", type(exc).__name__).inc()
            log_swallowed(log, "exploration log", exc)
    order = ranked.order
    columns = zip(items[order].tolist(), ranked.score[order].tolist(), ranked.pctr[order].tolist(),
                  ranked.explored[order].tolist(), strict=True)
    out_items = [{"item_id": i, "score": s, "pctr": p, "explored": e, "rank": r}
                 for r, (i, s, p, e) in enumerate(columns, start=1)]
    payload = {"request_id": request_id, "model_version": ranked.model_version, "degraded": ranked.degraded,
               "items": out_items}
    timing = ", ".join(f"{stage};dur={ms:.2f}" for stage, ms in ranked.timings_ms.items())
    note(model_version=ranked.model_version, degraded=ranked.degraded or None,
         explored=int(ranked.explored.sum()) if ranked.exploration is not None else None,
         timings_ms={k: round(v, 2) for k, v in ranked.timings_ms.items()})  # fmt: skip
    return orjson.dumps(payload), timing, time.perf_counter() - start


def _overloaded(state: ServiceState, exc: Overloaded, reason: str) -> ApiError:
    state.metrics.rejected.labels(reason).inc()
    return ApiError(503, "overloaded", str(exc), headers={"Retry-After": str(exc.retry_after_s)})


@router.post(
    "/v1/rank",
    response_model=RankOut,
    tags=["rank"],
    openapi_extra=request_body("RankRequest"),
    responses={
        **JSON_BODY_ERRORS,
        503: {"model": ErrorOut, "description": "no model loaded, or overloaded (see Retry-After)"},
    },
)
async def rank(request: Request) -> Response:
    """Rank the candidates for the user against the user's lifelong history. Candidates come as a list of objects
    (`candidates`) or as columns (`item_ids`, optional `category_ids`), at most LONGRANK_MAX_CANDIDATES, distinct.
    The response lists the top `top_n` (default: all) best first; `degraded` is true when the history could not be
    read within the read budget and the ranking used candidate features alone. A `Server-Timing` header gives the
    stage durations (store, gsu, model, and explore when explored). `explore: true` asks for AGE exploration (unless
    switched off by the operator); explored items carry `explored: true` and their explored score in `score`. When
    a request would wait longer than LONGRANK_QUEUE_TIMEOUT_S for an inference slot the answer is 503 at once."""
    state = _state(request)
    decoders: RequestDecoders = request.app.state.decoders
    body = decoders.rank(await read_json_body(request))
    request_id, model = start_request(state, body)
    admission: Admission = state.admission
    try:
        ticket = admission.admit()
    except Overloaded as exc:
        raise _overloaded(state, exc, "queue_full" if admission.pending >= admission.max_queue else "wait") from None
    state.metrics.candidates.observe(len(body.items))
    top_n = min(body.top_n or len(body.items), len(body.items))
    state.metrics.in_flight.inc()
    held: float | None = None
    start = time.perf_counter()
    try:
        context = contextvars.copy_context()  # the request id and log fields follow the request into the thread
        payload, timing, held = await asyncio.get_running_loop().run_in_executor(
            state.executor, context.run, _render, state, model, body, top_n, request_id,
            explore_policy(state, body.explore), ticket,
        )
    except Overloaded as exc:
        raise _overloaded(state, exc, "waited") from None
    finally:
        admission.finish(ticket, held)
        state.metrics.in_flight.dec()
    timing += f", total;dur={(time.perf_counter() - start) * 1e3:.2f}"
    return Response(payload, media_type="application/json", headers={"Server-Timing": timing})
