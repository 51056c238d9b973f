"""``create_app(settings)``: the FastAPI application factory. Nothing is read or opened at import time; the
lifespan sets the thread budget, opens the stores, loads and warms up the artifact, and closes it all at shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI

from retrieval.impressions import open_impressions
from retrieval.store import open_store
from serving import api, api_admin, api_rank
from serving.errors import install_error_handlers
from serving.exploration_log import open_exploration_log
from serving.limits import BodySizeLimit
from serving.metrics import Metrics, RequestMetrics
from serving.pipeline import Ranker
from serving.settings import Settings, load_settings
from serving.state import ServiceState


def create_app(settings: Settings) -> FastAPI:
    metrics = Metrics.create()

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
        executor = ThreadPoolExecutor(max_workers=settings.inference_slots(), thread_name_prefix="longrank-infer")
        impressions = open_impressions(settings.store_url, settings.store_options())
        exploration_log = open_exploration_log(settings.explore_log, settings.explore_log_stream,
                                               settings.explore_log_maxlen) if settings.explore_enabled else None
        state = ServiceState(settings, metrics, store, Ranker(read_store, metrics, impressions), executor,
                             impressions=impressions, exploration_log=exploration_log)
        if settings.artifact is not None:
            state.set_model(load_model(settings.artifact))
        app.state.service = state
        try:
            yield
        finally:
            executor.shutdown(wait=True)
            if exploration_log is not None:
                exploration_log.close()
            impressions.close()
            if read_store is not store:
                read_store.close()
            store.close()

    app = FastAPI(
        title="longrank",
        version="0.1.0",
        summary="CTR ranking over lifelong behaviour histories (SIM + CAN + AGE).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.include_router(api_rank.router)
    app.include_router(api.router)
    if settings.admin_token is not None:
        app.include_router(api_admin.router)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    return app


def app_from_env() -> FastAPI:
    """The app with settings from the environment: uvicorn's factory for ``longrank serve --workers N`` (each worker
    process imports this module and calls it; the CLI passes its flags on as LONGRANK_* variables)."""
    return create_app(load_settings())
