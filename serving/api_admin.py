"""POST /v1/admin/reload: load a new artifact, verify it (checksums + a test forward), swap it in atomically.
Registered only when LONGRANK_ADMIN_TOKEN is set. A failing artifact leaves the old model serving and the answer
says what failed. Requests in flight finish on the model they started with (they hold their own reference)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Annotated

from fastapi import APIRouter, Body, Header, Request

from models.artifacts import ArtifactError
from serving.errors import ApiError
from serving.model_state import load_model
from serving.schemas import ErrorOut, ReloadIn, ReloadOut
from serving.state import ServiceState

router = APIRouter()


def _authorize(state: ServiceState, authorization: str | None) -> None:
    token = state.settings.admin_token
    expected = f"Bearer {token.get_secret_value()}" if token is not None else None
    if expected is None or authorization is None or not secrets.compare_digest(authorization, expected):
        raise ApiError(401, "unauthorized", "admin endpoints need 'Authorization: Bearer $LONGRANK_ADMIN_TOKEN'",
                       field="Authorization", headers={"WWW-Authenticate": "Bearer"})


@router.post(
    "/v1/admin/reload",
    response_model=ReloadOut,
    tags=["admin"],
    responses={401: {"model": ErrorOut}, 409: {"model": ErrorOut}, 422: {"model": ErrorOut}},
)
async def reload(
    request: Request,
    body: Annotated[ReloadIn | None, Body()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> ReloadOut:
    """Load, verify and swap in the artifact at `artifact` (default: LONGRANK_ARTIFACT)."""
    state: ServiceState = request.app.state.service
    _authorize(state, authorization)
    path = (body.artifact if body is not None else None) or (
        str(state.settings.artifact) if state.settings.artifact else None
    )
    if path is None:
        raise ApiError(422, "invalid_request", "artifact: no path given and LONGRANK_ARTIFACT is unset",
                       field="artifact")
    if state.reload_lock.locked():
        raise ApiError(409, "reload_in_progress", "another reload is running", headers={"Retry-After": "1"})
    async with state.reload_lock:
        previous = state.model.version if state.model is not None else None
        try:
            new = await asyncio.to_thread(load_model, path)
        except (ArtifactError, ValueError, OSError) as exc:
            raise ApiError(422, "reload_failed", f"artifact {path} refused, still serving {previous}: {exc}",
                           field="artifact") from exc
        state.set_model(new)
    return ReloadOut(model_version=new.version, previous_version=previous, artifact=path)
