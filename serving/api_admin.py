"""POST /v1/admin/reload: load a new artifact, verify it (checksums + a test forward on a real search path), swap
it in atomically — in every worker of the fleet. Registered only when LONGRANK_ADMIN_TOKEN is set.

A failing artifact (missing, tampered, incompatible, or a config that asks for more memory than there is) leaves the
old model serving and the answer (422) says what failed; nothing reaches the other workers. With several workers
(serving/fleet.py) the worker that takes the request publishes the new generation and answers only when every
worker serves it (200, listing the workers), or names the workers that did not (409 ``reload_incomplete``).
Requests in flight finish on the model they started with (they hold their own reference).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Body, Header, Request

from serving.auth import require_bearer
from serving.errors import ApiError
from serving.fleet import Desired
from serving.model_state import LoadedModel, load_model
from serving.schemas import ErrorOut, ReloadIn, ReloadOut, WorkerOut
from serving.state import ServiceState

router = APIRouter()
log = logging.getLogger("longrank.admin")


async def load_checked(path: str, previous: str | None) -> LoadedModel:
    """Load and verify an artifact off the event loop; any failure is a 422 naming it (never a 500: a config that
    asks for a model too big to allocate raises RuntimeError/MemoryError from torch, not an ArtifactError)."""
    try:
        return await asyncio.to_thread(load_model, path)
    except Exception as exc:
        log.warning("reload of %s refused", path, exc_info=exc, extra={"fields": {"artifact": path}})
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise ApiError(422, "reload_failed", f"artifact {path} refused, still serving {previous}: "
                       f"{type(exc).__name__}: {reason}", field="artifact") from exc  # fmt: skip


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
    """Load, verify and swap in the artifact at `artifact` (default: LONGRANK_ARTIFACT) in every worker."""
    state: ServiceState = request.app.state.service
    require_bearer(authorization, [state.settings.admin_token], "LONGRANK_ADMIN_TOKEN")
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
        if state.fleet is None:
            new = await load_checked(path, previous)
            state.set_model(new)
            return ReloadOut(model_version=new.version, previous_version=previous, artifact=path)
        with state.fleet.exclusive() as mine:
            if not mine:
                raise ApiError(409, "reload_in_progress", "another worker is running a reload",
                               headers={"Retry-After": "1"})  # fmt: skip
            new = await load_checked(path, previous)
            want = state.fleet.publish(path, new.version)
            state.set_model(new, want.generation)
            return await _wait_for_fleet(state, want, previous)


async def _wait_for_fleet(state: ServiceState, want: Desired, previous: str | None) -> ReloadOut:
    assert state.fleet is not None
    settings = state.settings
    complete, statuses = await state.fleet.wait(want, settings.workers, settings.reload_timeout_s)
    workers = [WorkerOut(pid=s.pid, version=s.version, error=s.error) for s in statuses]
    if complete:
        return ReloadOut(model_version=want.version, previous_version=previous, artifact=want.artifact,
                         workers=workers)  # fmt: skip
    behind = [f"{s.pid} ({s.error or s.version})" for s in statuses if s.version != want.version]
    missing = settings.workers - len(statuses)
    detail = ", ".join(behind) + (f"; {missing} worker(s) not reporting" if missing > 0 else "")
    raise ApiError(409, "reload_incomplete", f"version {want.version} is served by {len(statuses) - len(behind)} "
                   f"of {settings.workers} workers; not by: {detail}", field="artifact",
                   extra={"workers": [w.model_dump() for w in workers]})  # fmt: skip


async def follow_fleet(state: ServiceState, poll_s: float = 0.2) -> None:
    """Run in every worker of a fleet: load the model the fleet must serve when a reload elsewhere published a new
    generation; report the outcome (an error keeps the old model serving and is reported, not retried)."""
    fleet = state.fleet
    assert fleet is not None
    while True:
        await asyncio.sleep(poll_s)
        want = fleet.desired()
        if want is None or want.generation <= state.generation or state.reload_lock.locked():
            continue
        async with state.reload_lock:
            if want.generation <= state.generation:
                continue
            try:
                new = await asyncio.to_thread(load_model, want.artifact)
                if new.version != want.version:
                    raise ValueError(f"{want.artifact} now holds version {new.version}, not {want.version}")
            except Exception as exc:
                log.warning("fleet reload to %s failed", want.version, exc_info=exc)
                state.generation = want.generation
                fleet.report(want.generation, state.model.version if state.model else None,
                             f"{type(exc).__name__}: {str(exc)[:300]}")  # fmt: skip
                continue
            state.set_model(new, want.generation)
            log.info("fleet reload: now serving %s", new.version, extra={"fields": {"generation": want.generation}})
