"""HTTP routes: events, users, health and metrics (rank: api_rank.py; admin: api_admin.py).

Routes are plain ``def``: the store calls block, so FastAPI runs them in its worker thread pool and the event loop
stays free. Everything a route needs hangs off ``request.app.state`` (set once by the lifespan in app.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from retrieval.events import EventBatch
from retrieval.store import BehaviorStore, StoreError
from serving.errors import ApiError
from serving.metrics import Metrics
from serving.schemas import (
    Behavior,
    BehaviorsOut,
    DeletedOut,
    ErrorOut,
    EventsIn,
    EventsOut,
    HealthOut,
    ReadyOut,
)
from serving.settings import Settings
from serving.state import ServiceState

router = APIRouter()
UserPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$", examples=["196"])]
ERRORS: dict[int | str, dict[str, object]] = {
    413: {"model": ErrorOut, "description": "body too large"},
    422: {"model": ErrorOut, "description": "a field breaks a rule or a limit"},
    503: {"model": ErrorOut, "description": "the store is unreachable"},
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


@router.post("/v1/events", response_model=EventsOut, responses=ERRORS, tags=["events"])
def post_events(body: EventsIn, request: Request) -> EventsOut:
    """Append behaviour events. Idempotent by `event_id`: a repeated event is acknowledged and counted as a
    duplicate, not stored twice. A batch with an invalid event is rejected whole (nothing is stored). An event is
    visible to the next rank call once this returns."""
    limit = _settings(request).max_events_per_batch
    if len(body.events) > limit:
        raise ApiError(422, "limit_exceeded", f"events: {len(body.events)} events exceed the limit of {limit} "
                       "per request (LONGRANK_MAX_EVENTS_PER_BATCH)", field="events", limit=limit)
    batch = EventBatch.from_columns(
        user_id=[e.user_id for e in body.events],
        item_id=[e.item_id for e in body.events],
        category_id=[e.category_id for e in body.events],
        ts=[e.ts for e in body.events],
        action=[e.action for e in body.events],
        event_id=[e.event_id for e in body.events],
    )
    metrics = _metrics(request)
    try:
        accepted, duplicates = _store(request).append(batch)
    except StoreError as exc:
        metrics.store_errors.labels("append", type(exc).__name__).inc()
        raise
    metrics.events.labels("accepted").inc(accepted)
    metrics.events.labels("duplicate").inc(duplicates)
    _count_impressions(request, body, duplicates)
    return EventsOut(accepted=accepted, duplicates=duplicates)


def _count_impressions(request: Request, body: EventsIn, duplicates: int) -> None:
    """Views (action 0) that were stored count as impressions of their item (AGE's eligibility limit).

    The store reports how many events were duplicates, not which: with none, every view counts; with some, only
    views without an ``event_id`` (which are never duplicates) count, so a retried batch is not counted twice (a
    mixed batch may undercount, which only keeps an item explorable a little longer). A counter error is counted
    in the metrics and does not fail the request: the events are stored."""
    state: ServiceState = request.app.state.service
    if state.impressions is None:
        return
    views = [e.item_id for e in body.events if e.action == 0 and (duplicates == 0 or e.event_id is None)]
    if not views:
        return
    try:
        state.impressions.add(views)
    except StoreError as exc:
        _metrics(request).store_errors.labels("impressions", type(exc).__name__).inc()


@router.get("/v1/users/{user_id}/behaviors", response_model=BehaviorsOut, responses=ERRORS, tags=["users"])
def get_behaviors(
    user_id: UserPath, request: Request, limit: Annotated[int, Query(ge=1, le=1_000_000)] = 100
) -> BehaviorsOut:
    """The user's most recent `limit` behaviours, oldest first, and the stored length."""
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


@router.delete("/v1/users/{user_id}", response_model=DeletedOut, responses=ERRORS, tags=["users"])
def delete_user(user_id: UserPath, request: Request) -> DeletedOut:
    """Erase every behaviour and remembered event id of the user."""
    return DeletedOut(user_id=user_id, deleted=_store(request).delete(user_id))


@router.get("/healthz", response_model=HealthOut, tags=["health"])
def healthz() -> HealthOut:
    """Alive: the process answers."""
    return HealthOut(status="ok")


@router.get("/readyz", response_model=ReadyOut, responses={503: {"model": ReadyOut}}, tags=["health"])
def readyz(request: Request, response: Response) -> ReadyOut:
    """Ready: the store answers and, when an artifact is configured, the model is loaded."""
    state: ServiceState = request.app.state.service
    try:
        state.store.ping()
        store_state = "ok"
    except StoreError as exc:
        store_state = f"unreachable: {exc}"
    model = state.model.version if state.model is not None else None
    ready = store_state == "ok" and (model is not None or state.settings.artifact is None)
    if not ready:
        response.status_code = 503
    return ReadyOut(ready=ready, store=store_state, model=model)


@router.get("/metrics", tags=["health"], response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(_metrics(request).registry), media_type=CONTENT_TYPE_LATEST)
