"""Response bodies of the HTTP API (pydantic v2, for the OpenAPI schema) and the small request bodies (admin). The
two large request bodies, POST /v1/rank and POST /v1/events, are decoded by serving/requests.py (msgspec)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EventsOut(BaseModel):
    accepted: int = Field(description="events stored now")
    duplicates: int = Field(description="events whose event_id was already stored (acknowledged, not stored again)")


class Behavior(BaseModel):
    item_id: int
    category_id: int
    ts: int
    action: int


class BehaviorsOut(BaseModel):
    user_id: str
    length: int = Field(description="behaviours stored for the user")
    behaviors: list[Behavior] = Field(description="the most recent `limit` behaviours, oldest first")


class DeletedOut(BaseModel):
    user_id: str
    deleted: bool


class ErrorOut(BaseModel):
    error: str = Field(description="a machine-readable kind, e.g. invalid_event, limit_exceeded, store_unavailable")
    message: str
    field: str | None = None
    limit: int | None = None


JSON_BODY_ERRORS: dict[int | str, dict[str, object]] = {  # the OpenAPI responses of an endpoint reading a JSON body
    413: {"model": ErrorOut, "description": "body too large"},
    415: {"model": ErrorOut, "description": "not a JSON body"},
    422: {"model": ErrorOut, "description": "a field breaks a rule or a limit"},
}


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    ready: bool
    store: str = Field(description="ok, or why the store cannot serve: store_unavailable, store_timeout, "
                       "store_loading, store_read_only, store_full")
    model: str | None = Field(None, description="the version this worker serves")
    versions: list[str] = Field(default_factory=list, description="versions the fleet's live workers serve")


class RankedItem(BaseModel):
    item_id: int
    score: float = Field(description="the ranking score: pctr, or the explored score where explored")
    pctr: float = Field(description="the model's click probability")
    explored: bool
    rank: int = Field(description="1-based position")


class RankOut(BaseModel):
    request_id: str
    model_version: str
    degraded: bool = Field(description="true when the user's history could not be read in time")
    items: list[RankedItem]


class ReloadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    artifact: str | None = Field(None, description="artifact directory; default: LONGRANK_ARTIFACT")


class WorkerOut(BaseModel):
    pid: int
    version: str | None
    error: str | None = None


class ReloadOut(BaseModel):
    model_version: str
    previous_version: str | None
    artifact: str
    workers: list[WorkerOut] = Field(default_factory=list, description="every worker of the fleet, on the new version")
