"""Everything one app instance holds while it runs, created by the lifespan in app.py and read by the routes."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from retrieval.impressions import ImpressionCounter
from retrieval.store import BehaviorStore
from serving.exploration_log import ExplorationLog
from serving.metrics import Metrics
from serving.model_state import LoadedModel
from serving.pipeline import Ranker
from serving.settings import Settings


@dataclass
class ServiceState:
    settings: Settings
    metrics: Metrics
    store: BehaviorStore  # writes and reads outside the rank path (normal timeouts)
    ranker: Ranker  # reads with the rank read budget as timeouts
    executor: ThreadPoolExecutor  # inference runs here, never on the event loop
    model: LoadedModel | None = None  # swapped atomically by a reload; a request reads it once
    pending: int = 0  # rank requests queued or running (only touched on the event loop)
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    impressions: ImpressionCounter | None = None  # per-item impression counts, next to the behaviour store
    exploration_log: ExplorationLog | None = None  # where explored responses are logged

    def set_model(self, model: LoadedModel) -> None:
        self.model = model
        self.metrics.model_info.info({"version": model.version, "variant": model.config.variant,
                                      "artifact": str(model.path)})
