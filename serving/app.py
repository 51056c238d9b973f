"""``create_app(settings)``: the FastAPI application factory. Nothing is read or opened at import time; the
lifespan sets the thread budget, opens the stores, loads and warms up the artifact, and closes it all at shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI

from retrieval.store import open_store
from serving import api, api_admin, api_rank
from serving.errors import install_error_handlers
from serving.limits import BodySizeLimit
from serving.metrics import Metrics, RequestMetrics
from serving.pipeline import Ranker
from serving.settings import Settings
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
        executor = ThreadPoolExecutor(max_workers=settings.workers(), thread_name_prefix="longrank-infer")
        state = ServiceState(settings, metrics, store, Ranker(read_store, metrics), executor)
        if settings.artifact is not None:
            state.set_model(load_model(settings.artifact))
        app.state.service = state
        try:
            yield
        finally:
            executor.shutdown(wait=True)
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
