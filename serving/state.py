"""Everything one app instance holds while it runs, created by the lifespan in app.py and read by the routes."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from retrieval.impressions import ImpressionCounter
from retrieval.store import BehaviorStore
from serving.admission import Admission
from serving.exploration_log import ExplorationLog
from serving.fleet import Fleet
from serving.logs import hash_user
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
    admission: Admission  # rank requests queued or running, by count and by time (touched on the event loop)
    model: LoadedModel | None = None  # swapped atomically by a reload; a request reads it once
    generation: int = 0  # the fleet generation of ``model`` (serving/fleet.py; 0 = the start-up artifact)
    fleet: Fleet | None = None  # the other workers of `longrank serve --workers N`, None for a lone process
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    impressions: ImpressionCounter | None = None  # per-item impression counts, next to the behaviour store
    exploration_log: ExplorationLog | None = None  # where explored responses are logged

    def user_hash(self, user_id: str) -> str:
        """The user id as logs show it (never in clear)."""
        salt = self.settings.log_salt
        return hash_user(user_id, salt.get_secret_value().encode() if salt is not None else b"")

    def set_model(self, model: LoadedModel, generation: int | None = None) -> None:
        self.model = model
        if generation is not None:
            self.generation = generation
        self.metrics.model_info.info({"version": model.version, "variant": model.config.variant})
        if self.fleet is not None:
            self.fleet.report(self.generation, model.version)
