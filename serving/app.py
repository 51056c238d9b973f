"""``create_app(settings)``: the FastAPI application factory. Nothing is read or opened at import time; the
lifespan opens the store (and, with the ranking service, loads the artifact) and closes them at shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from retrieval.store import open_store
from serving.api import router
from serving.errors import install_error_handlers
from serving.limits import BodySizeLimit
from serving.metrics import Metrics, RequestMetrics
from serving.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    metrics = Metrics.create()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = open_store(settings.store_url, settings.store_options())
        app.state.store = store
        try:
            yield
        finally:
            store.close()

    app = FastAPI(
        title="longrank",
        version="0.1.0",
        summary="CTR ranking over lifelong behaviour histories (SIM + CAN + AGE).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.include_router(router)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    return app
