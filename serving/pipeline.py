"""The ranking pipeline, pure orchestration: store -> GSU -> model -> sort. No HTTP here.

One call ranks one user's candidates on one model (the ``LoadedModel`` the request took at its start):

1. store: one read (one round trip on Redis): the last S behaviours, plus the candidates' category lists for a
   hard-search model (SIM's User Behavior Tree) or the full sequence for soft search / full attention. The read
   store is opened with the read budget as its timeouts, so a slow or absent store costs at most the budget; then
   the request is ranked without history and marked ``degraded``.
2. gsu: per candidate the top-K behaviours (retrieval.gsu) from what was read.
3. model: models.features.score — the same feature building as training — on a batch of U = 1 user, C candidates.
4. sort by score (descending; ties by candidate order) and cut to ``top_n``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from models.features import score
from retrieval.events import empty_behaviors
from retrieval.gsu import HardSearch, Retrieved
from retrieval.store import BehaviorStore, StoreError, UserHistory
from serving.metrics import Metrics
from serving.model_state import LoadedModel


@dataclass
class Ranked:
    order: npt.NDArray[np.int64]  # candidate indices, best first, cut to top_n
    pctr: npt.NDArray[np.float32]  # [C] model probability of every candidate (input order)
    score: npt.NDArray[np.float32]  # [C] ranking score (pctr, or the explored score where explored)
    explored: npt.NDArray[np.bool_]  # [C]
    degraded: bool
    model_version: str
    timings_ms: dict[str, float] = field(default_factory=dict)


class Ranker:
    def __init__(self, read_store: BehaviorStore, metrics: Metrics) -> None:
        self.store = read_store
        self.metrics = metrics

    def read(self, model: LoadedModel, user_id: str, cats: npt.NDArray[np.int64]) -> tuple[UserHistory | None, str]:
        cfg = model.config
        hard = isinstance(model.gsu, HardSearch)
        try:
            history = self.store.read(
                user_id,
                recent=cfg.short_len,
                categories=np.unique(cats).tolist() if hard else (),
                per_category=cfg.long_k if hard else None,
                full=model.reads_full_history,
            )
        except StoreError as exc:
            self.metrics.store_errors.labels("read", type(exc).__name__).inc()
            return None, type(exc).__name__
        return history, ""

    def rank(
        self,
        model: LoadedModel,
        user_id: str,
        items: npt.NDArray[np.int64],
        cats: npt.NDArray[np.int64],
        top_n: int,
        now: int | None = None,
    ) -> Ranked:
        clock = int(time.time()) if now is None else now
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        history, _ = self.read(model, user_id, cats)
        t1 = time.perf_counter()
        timings["store"] = (t1 - t0) * 1e3

        degraded = history is None
        behaviours = empty_behaviors()
        if history is not None:
            behaviours = history.full if history.full is not None else history.recent
        retrieved: Retrieved | None = None
        if isinstance(model.gsu, HardSearch):
            by_category = history.by_category if history is not None else {}
            retrieved = model.gsu.search_lists(by_category, items, cats)
        elif model.gsu is not None:
            retrieved = model.gsu.search(behaviours, items, cats)
        t2 = time.perf_counter()
        timings["gsu"] = (t2 - t1) * 1e3

        pctr = score(model.artifact.model, behaviours, items, cats, clock, model.config, model.gsu,
                     retrieved=retrieved)
        t3 = time.perf_counter()
        timings["model"] = (t3 - t2) * 1e3

        ranking_score = pctr
        order = np.lexsort((np.arange(len(items)), -ranking_score))[:top_n].astype(np.int64)
        for stage, ms in timings.items():
            self.metrics.stage.labels(stage).observe(ms / 1e3)
        if degraded:
            self.metrics.degraded.inc()
        return Ranked(order, pctr, ranking_score, np.zeros(len(items), dtype=bool), degraded, model.version, timings)
