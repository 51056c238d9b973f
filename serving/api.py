"""HTTP routes: events, users, health and metrics (rank: api_rank.py; admin: api_admin.py).

Routes are plain ``def``: the store calls block, so FastAPI runs them in its worker thread pool and the event loop
stays free. Everything a route needs hangs off ``request.app.state`` (set once by the lifespan in app.py).
"""

from __future__ import annotations

import logging
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Header, Path, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from retrieval.events import EventBatch
from retrieval.store import BehaviorStore, StoreError
from serving.api_rank import read_json_body
from serving.auth import require_data_token
from serving.errors import ApiError
from serving.logs import log_swallowed, note
from serving.metrics import Metrics
from serving.requests import RequestDecoders, request_body
from serving.schemas import (
    Behavior,
    BehaviorsOut,
    DeletedOut,
    ErrorOut,
    EventsOut,
    HealthOut,
    ReadyOut,
)
from serving.settings import Settings
from serving.state import ServiceState

router = APIRouter()
log = logging.getLogger("longrank.api")
UserPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$", examples=["196"])]
ERRORS: dict[int | str, dict[str, object]] = {
    413: {"model": ErrorOut, "description": "body too large"},
    422: {"model": ErrorOut, "description": "a field breaks a rule or a limit"},
    503: {"model": ErrorOut, "description": "the store cannot serve now (see error and Retry-After)"},
}
DATA_ERRORS: dict[int | str, dict[str, object]] = {
    **ERRORS, 401: {"model": ErrorOut, "description": "LONGRANK_DATA_TOKEN (or the admin token) is set: send it"},
}


def _store(request: Request) -> BehaviorStore:
    state: ServiceState = request.app.state.service
    return state.store


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


@router.post("/v1/events", response_model=EventsOut, responses=ERRORS, tags=["events"],
             openapi_extra=request_body("EventsRequest"))
async def post_events(request: Request) -> EventsOut:
    """Append behaviour events (at most LONGRANK_MAX_EVENTS_PER_BATCH). Idempotent by `event_id`: a repeated event
    is acknowledged and counted as a duplicate, not stored twice. A batch with an invalid event is rejected whole
    (nothing is stored). An event is visible to the next rank call once this returns. When the store cannot take
    writes (unreachable, full, read-only) the answer is 503 with Retry-After and nothing is acknowledged."""
    decoders: RequestDecoders = request.app.state.decoders
    batch = decoders.events(await read_json_body(request))
    return await run_in_threadpool(_append, request, batch)  # the store call blocks: off the event loop


def _append(request: Request, batch: EventBatch) -> EventsOut:
    metrics = _metrics(request)
    try:
        accepted, duplicates = _store(request).append(batch)
    except StoreError as exc:
        metrics.store_errors.labels("append", type(exc).__name__).inc()
        raise
    metrics.events.labels("accepted").inc(accepted)
    metrics.events.labels("duplicate").inc(duplicates)
    note(events=len(batch), accepted=accepted, duplicates=duplicates)
    _count_impressions(request, batch, duplicates)
    return EventsOut(accepted=accepted, duplicates=duplicates)


def _count_impressions(request: Request, batch: EventBatch, duplicates: int) -> None:
    """Views (action 0) that were stored count as impressions of their item (AGE's eligibility limit).

    The store reports how many events were duplicates, not which: with none, every view counts; with some, only
    views without an ``event_id`` (which are never duplicates) count, so a retried batch is not counted twice (a
    mixed batch may undercount, which only keeps an item explorable a little longer). A counter error is counted
    in the metrics and logged and does not fail the request: the events are stored."""
    state: ServiceState = request.app.state.service
    if state.impressions is None:
        return
    views = batch.action == 0
    if duplicates:
        views &= np.fromiter((e is None for e in batch.event_id), dtype=bool, count=len(batch))
    if not views.any():
        return
    try:
        state.impressions.add(batch.item_id[views])
    except StoreError as exc:
        _metrics(request).store_errors.labels("impressions", type(exc).__name__).inc()
        log_swallowed(log, "impression counter", exc)


def _guard_data(request: Request, authorization: str | None) -> None:
    settings = _settings(request)
    require_data_token(authorization, settings.data_token, settings.admin_token)


@router.get("/v1/users/{user_id}/behaviors", response_model=BehaviorsOut, responses=DATA_ERRORS, tags=["users"])
def get_behaviors(
    user_id: UserPath, request: Request, limit: Annotated[int, Query(ge=1, le=1_000_000)] = 100,
    authorization: Annotated[str | None, Header()] = None,
) -> BehaviorsOut:
    """The user's most recent `limit` behaviours, oldest first, and the stored length. Needs
    `Authorization: Bearer $LONGRANK_DATA_TOKEN` (or the admin token) when either token is set. Works while the
    store is full or read-only."""
    _guard_data(request, authorization)
    cap = _settings(request).max_behaviors_per_read
    if limit > cap:
        raise ApiError(422, "limit_exceeded", f"limit: {limit} exceeds the limit of {cap} "
                       "(LONGRANK_MAX_BEHAVIORS_PER_READ)", field="limit", limit=cap)
    history = _store(request).read(user_id, recent=limit)
    rows = history.recent
    return BehaviorsOut(
        user_id=user_id,
        length=history.length,
        behaviors=[
            Behavior(item_id=int(i), category_id=int(c), ts=int(t), action=int(a))
            for i, c, t, a in zip(rows["item_id"], rows["category_id"], rows["ts"], rows["action"], strict=True)
        ],
    )


@router.delete("/v1/users/{user_id}", response_model=DeletedOut, responses=DATA_ERRORS, tags=["users"])
def delete_user(
    user_id: UserPath, request: Request, authorization: Annotated[str | None, Header()] = None
) -> DeletedOut:
    """Erase every behaviour and remembered event id of the user. Needs `Authorization: Bearer
    $LONGRANK_DATA_TOKEN` (or the admin token) when either token is set."""
    _guard_data(request, authorization)
    return DeletedOut(user_id=user_id, deleted=_store(request).delete(user_id))


@router.get("/healthz", response_model=HealthOut, tags=["health"])
def healthz() -> HealthOut:
    """Alive: the process answers."""
    return HealthOut(status="ok")


@router.get("/readyz", response_model=ReadyOut, responses={503: {"model": ReadyOut}}, tags=["health"])
def readyz(request: Request, response: Response) -> ReadyOut:
    """Ready: the store answers AND takes writes (not full, not read-only, not loading) and, when an artifact is
    configured, the model is loaded. `store` says which (`ok`, or the store error kind: `store_unavailable`,
    `store_timeout`, `store_loading`, `store_read_only`, `store_full`); `versions` lists the model versions the
    fleet's live workers serve (one after a completed reload)."""
    state: ServiceState = request.app.state.service
    try:
        state.store.ping(writable=True)
        store_state = "ok"
    except StoreError as exc:
        store_state = exc.kind
    model = state.model.version if state.model is not None else None
    ready = store_state == "ok" and (model is not None or state.settings.artifact is None)
    if not ready:
        response.status_code = 503
    versions = state.fleet.versions() if state.fleet is not None else ([model] if model else [])
    return ReadyOut(ready=ready, store=store_state, model=model, versions=versions)


@router.get("/metrics", tags=["health"], response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(_metrics(request).registry), media_type=CONTENT_TYPE_LATEST)
