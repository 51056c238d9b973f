"""``create_app(settings)``: the FastAPI application factory. Nothing is read or opened at import time; the
lifespan sets the thread budget, opens the stores, loads and warms up the artifact (the fleet's current one when this
is a worker of ``longrank serve --workers N``), and closes it all at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from retrieval.impressions import open_impressions
from retrieval.store import open_store
from serving import api, api_admin, api_explain, api_rank
from serving.admission import Admission
from serving.errors import install_error_handlers
from serving.exploration_log import open_exploration_log
from serving.fleet import Fleet, die_with_parent
from serving.limits import BodySizeLimit
from serving.logs import AccessLog, configure_logging
from serving.metrics import Metrics, RequestMetrics
from serving.pipeline import Ranker
from serving.requests import RequestDecoders
from serving.settings import Settings, load_settings
from serving.state import ServiceState

log = logging.getLogger("longrank.app")


def create_app(settings: Settings) -> FastAPI:
    configure_logging(settings.log_level, settings.log_format)
    metrics = Metrics.create()
    decoders = RequestDecoders(settings.max_candidates, settings.max_events_per_batch)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from models.runtime import set_threads
        from serving.model_state import load_model

        set_threads(settings.torch_threads)
        store = open_store(settings.store_url, settings.store_options())
        shared = settings.store_url.startswith("memory:")  # a second memory store would be a different store
        read_store = store if shared else open_store(
            settings.store_url, settings.store_options(timeout_s=settings.store_read_budget_s)
        )
        slots = settings.inference_slots()
        executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="longrank-infer")
        impressions = open_impressions(settings.store_url, settings.store_options())  # counted by /v1/events
        # read on the rank path (explore): the read budget as its timeout, no second try
        read_impressions = impressions if shared else open_impressions(
            settings.store_url, settings.store_options(timeout_s=settings.store_read_budget_s))  # fmt: skip
        exploration_log = open_exploration_log(
            settings.explore_log, settings.explore_log_stream, settings.explore_log_maxlen,
            timeout_s=settings.store_timeout_s,
            password=settings.store_password.get_secret_value() if settings.store_password else None,
        ) if settings.explore_enabled else None  # fmt: skip
        fleet = Fleet(settings.run_dir) if settings.run_dir is not None else None
        state = ServiceState(settings, metrics, store, Ranker(read_store, metrics, read_impressions), executor,
                             Admission(slots, settings.max_queue, settings.queue_timeout_s), fleet=fleet,
                             impressions=impressions, exploration_log=exploration_log)  # fmt: skip
        want = fleet.desired() if fleet is not None else None
        if want is not None:  # a worker (re)started after a reload serves the fleet's model
            state.set_model(load_model(want.artifact), want.generation)
        elif settings.artifact is not None:
            state.set_model(load_model(settings.artifact))
        app.state.service = state
        follower = asyncio.create_task(api_admin.follow_fleet(state)) if fleet is not None else None
        try:
            yield
        finally:
            if follower is not None:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower
            if fleet is not None:
                fleet.forget()
            executor.shutdown(wait=True)
            if exploration_log is not None:
                exploration_log.close()
            impressions.close()
            if read_impressions is not impressions:
                read_impressions.close()
            if read_store is not store:
                read_store.close()
            store.close()

    docs = settings.docs_enabled
    app = FastAPI(
        title="longrank",
        version="0.1.0",
        summary="CTR ranking over lifelong behaviour histories (SIM + CAN + AGE).",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.decoders = decoders
    app.include_router(api_rank.router)
    app.include_router(api.router)
    api_explain.install(app, settings)  # POST /v1/explain and the page at /ui
    if settings.admin_token is not None:
        app.include_router(api_admin.router)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(AccessLog, enabled=settings.access_log)

    def openapi() -> dict[str, Any]:
        """FastAPI's schema plus the msgspec schemas of the two large request bodies (with this app's limits)."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(decoders.openapi_components())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def app_from_env() -> FastAPI:
    """The app with settings from the environment: uvicorn's factory for ``longrank serve --workers N`` (each worker
    process imports this module and calls it; the CLI passes its flags on as LONGRANK_* variables). A worker asks
    to die with its master (serving/fleet.py)."""
    settings = load_settings()
    if settings.supervisor_pid is not None:
        die_with_parent(settings.supervisor_pid)
    return create_app(settings)
