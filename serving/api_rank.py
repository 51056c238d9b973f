"""POST /v1/rank: validate, admit (or refuse with 503 + Retry-After when the queue is full), rank off the event loop
in the bounded inference executor, answer with a Server-Timing header of the stage durations.

Duplicate candidates are refused (422 naming the first repeated position): a ranking has one slot per item.

Exploration (AGE): a request is explored when it says ``"explore": true``, or, when it says nothing, with
probability ``LONGRANK_EXPLORE_FRACTION``; ``LONGRANK_EXPLORE_ENABLED=false`` (the kill switch) turns it off for
every request. An explored response flags its explored items (at most ``LONGRANK_EXPLORE_BUDGET`` inside top_n) and
is logged to the exploration log (serving/exploration_log.py) before it is sent.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response

from models.age import AGEParams
from serving.errors import ApiError
from serving.exploration_log import ExplorationLogError
from serving.model_state import LoadedModel
from serving.pipeline import ExplorePolicy, Ranked
from serving.schemas import ErrorOut, RankIn, RankOut
from serving.state import ServiceState

router = APIRouter()
UNKNOWN_CATEGORY = 2**31 - 1  # stands for an absent category_id; no real category has it in practice


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


def _arrays(body: RankIn, limit: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(body.candidates)
    if n > limit:
        raise ApiError(422, "limit_exceeded", f"candidates: {n} candidates exceed the limit of {limit} per request "
                       "(LONGRANK_MAX_CANDIDATES)", field="candidates", limit=limit)
    items = np.fromiter((c.item_id for c in body.candidates), dtype=np.int64, count=n)
    cats = np.fromiter((UNKNOWN_CATEGORY if c.category_id is None else c.category_id for c in body.candidates),
                       dtype=np.int64, count=n)
    _, first, counts = np.unique(items, return_index=True, return_counts=True)
    if counts.max() > 1:
        repeated = items[first[np.argmax(counts > 1)]]
        where = int(np.flatnonzero(items == repeated)[1])
        raise ApiError(422, "duplicate_candidate", f"candidates[{where}].item_id: item {int(repeated)} appears more "
                       "than once; candidates must be distinct", field=f"candidates[{where}].item_id")
    return items, cats


def explore_policy(state: ServiceState, asked: bool | None) -> ExplorePolicy | None:
    """The policy when this request is explored, else None (kill switch, per-request flag, traffic fraction)."""
    s = state.settings
    if not s.explore_enabled:
        return None
    wanted = asked if asked is not None else (s.explore_fraction > 0 and random.random() < s.explore_fraction)
    if not wanted:
        return None
    params = AGEParams(policy=s.explore_policy, lam=s.explore_lambda, dropout=s.explore_dropout,
                       samples=s.explore_samples, pgd_steps=s.explore_pgd_steps)  # fmt: skip
    return ExplorePolicy(params, budget=s.explore_budget, max_impressions=s.explore_max_impressions)


def log_record(body: RankIn, items: np.ndarray, ranked: Ranked, request_id: str) -> dict[str, object]:
    """The exploration log record of an explored response (fields: serving.exploration_log.RECORD_FIELDS)."""
    assert ranked.explored_score is not None and ranked.eligible is not None
    order = ranked.order.tolist()
    return {
        "request_id": request_id, "ts": time.time(), "user_id": body.user_id, "model_version": ranked.model_version,
        "policy": (ranked.exploration or {}).get("policy"), "params": ranked.exploration,
        "candidates": items.tolist(), "categories": [c.category_id for c in body.candidates],
        "pctr": ranked.pctr.tolist(), "explored_score": ranked.explored_score.tolist(),
        "eligible": ranked.eligible.tolist(), "order": order, "explored": ranked.explored[order].tolist(),
        "propensity": None, "degraded": ranked.degraded,
    }  # fmt: skip


def _render(state: ServiceState, model: LoadedModel, body: RankIn, items: np.ndarray, cats: np.ndarray,
            top_n: int, request_id: str, policy: ExplorePolicy | None = None) -> tuple[bytes, str]:
    """Runs in the inference executor: rank, log an explored response, serialise (all off the event loop)."""
    ranked = state.ranker.rank(model, body.user_id, items, cats, top_n, explore_policy=policy, request_id=request_id)
    if ranked.exploration is not None and state.exploration_log is not None:
        try:
            state.exploration_log.write(log_record(body, items, ranked, request_id))
        except (OSError, ExplorationLogError) as exc:  # the response still goes out; the loss is counted
            state.metrics.store_errors.labels("exploration_log", type(exc).__name__).inc()
    order = ranked.order
    columns = zip(items[order].tolist(), ranked.score[order].tolist(), ranked.pctr[order].tolist(),
                  ranked.explored[order].tolist(), strict=True)
    out_items = [{"item_id": i, "score": s, "pctr": p, "explored": e, "rank": r}
                 for r, (i, s, p, e) in enumerate(columns, start=1)]
    payload = {"request_id": request_id, "model_version": ranked.model_version, "degraded": ranked.degraded,
               "items": out_items}
    timing = ", ".join(f"{stage};dur={ms:.2f}" for stage, ms in ranked.timings_ms.items())
    return orjson.dumps(payload), timing


@router.post(
    "/v1/rank",
    response_model=RankOut,
    tags=["rank"],
    responses={
        413: {"model": ErrorOut, "description": "body too large"},
        422: {"model": ErrorOut, "description": "a field breaks a rule or a limit"},
        503: {"model": ErrorOut, "description": "no model loaded, or the queue is full (see Retry-After)"},
    },
)
async def rank(body: RankIn, request: Request) -> Response:
    """Rank the candidates for the user against the user's lifelong history. The response lists the top `top_n`
    (default: all) best first; `degraded` is true when the history could not be read within the read budget and the
    ranking used candidate features alone. A `Server-Timing` header gives the stage durations (store, gsu, model,
    and explore when explored). `explore: true` asks for AGE exploration (unless switched off by the operator);
    explored items carry `explored: true` and their explored score in `score`."""
    state = _state(request)
    settings = state.settings
    items, cats = _arrays(body, settings.max_candidates)
    if body.top_n is not None and body.top_n > settings.max_candidates:
        raise ApiError(422, "limit_exceeded", f"top_n: {body.top_n} exceeds the limit of {settings.max_candidates}",
                       field="top_n", limit=settings.max_candidates)
    model = state.model
    if model is None:
        raise ApiError(503, "model_unavailable", "no model is loaded (set LONGRANK_ARTIFACT)",
                       headers={"Retry-After": "5"})
    if state.pending >= settings.max_queue:
        raise ApiError(503, "overloaded", f"{state.pending} rank requests are queued or running (limit "
                       f"{settings.max_queue}, LONGRANK_MAX_QUEUE); retry later", headers={"Retry-After": "1"})
    state.metrics.candidates.observe(len(items))
    top_n = min(body.top_n or len(items), len(items))
    request_id = body.request_id or uuid.uuid4().hex
    state.pending += 1
    state.metrics.in_flight.inc()
    start = time.perf_counter()
    try:
        payload, timing = await asyncio.get_running_loop().run_in_executor(
            state.executor, _render, state, model, body, items, cats, top_n, request_id,
            explore_policy(state, body.explore),
        )
    finally:
        state.pending -= 1
        state.metrics.in_flight.dec()
    timing += f", total;dur={(time.perf_counter() - start) * 1e3:.2f}"
    return Response(payload, media_type="application/json", headers={"Server-Timing": timing})
