"""Request and response bodies of the HTTP API (pydantic v2). Limits that depend on settings (candidates per
request, events per batch) are checked in the routes so the error names the configured limit."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

UserId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$", examples=["196"])]
ItemId = Annotated[int, Field(ge=0, le=2**63 - 1, examples=[242])]
CategoryId = Annotated[int, Field(ge=0, le=2**31 - 1, examples=[3])]


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    item_id: ItemId
    category_id: CategoryId
    ts: int = Field(description="unix seconds, from 2000-01-01 to one day ahead", examples=[1764000000])
    action: int = Field(0, ge=0, le=255, description="0 view, 1 click, 2 like/cart, 3 purchase (configurable)")
    event_id: str | None = Field(
        None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$", description="idempotency key"
    )


class EventsIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"events": [{"user_id": "196", "item_id": 242, "category_id": 3, "ts": 1764000000, "action": 1,
                             "event_id": "196-242-1764000000"}]}
            ]
        },
    )

    events: list[EventIn] = Field(min_length=1)


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


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    ready: bool
    store: str
    model: str | None = None


class Candidate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: ItemId
    category_id: CategoryId | None = Field(
        None, description="the item's category; absent = unknown (no category features, hard search finds nothing)"
    )


class RankIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"user_id": "196", "candidates": [{"item_id": 242, "category_id": 3}, {"item_id": 302,
                 "category_id": 7}, {"item_id": 377, "category_id": 4}], "top_n": 2}
            ]
        },
    )

    user_id: UserId
    candidates: list[Candidate] = Field(min_length=1, description="at most LONGRANK_MAX_CANDIDATES, distinct item ids")
    top_n: int | None = Field(None, ge=1, description="how many to return (default: all candidates)")
    explore: bool | None = Field(None, description="rank with AGE exploration (default: the configured policy)")
    request_id: str | None = Field(None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")


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


class ReloadOut(BaseModel):
    model_version: str
    previous_version: str | None
    artifact: str
