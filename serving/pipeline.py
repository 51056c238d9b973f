"""The ranking pipeline, pure orchestration: store -> GSU -> model -> sort. No HTTP here.

One call ranks one user's candidates on one model (the ``LoadedModel`` the request took at its start):

1. store: one read (one round trip on Redis): the last S behaviours, plus the candidates' category lists for a
   hard-search model (SIM's User Behavior Tree) or the full sequence for soft search / full attention. The read
   store is opened with the read budget as its timeouts, so a slow or absent store costs at most the budget; then
   the request is ranked without history and marked ``degraded``.
2. gsu: per candidate the top-K behaviours (retrieval.gsu) from what was read.
3. model: models.features.score — the same feature building as training — on a batch of U = 1 user, C candidates.
4. explore (only when the request is explored, see ``ExplorePolicy``): impression counts of the candidates (only
   items under the limit are eligible), then models.bandits.served.age_slate — one forward with the candidate
   embeddings as a leaf, one batched backward, M draws of the MC-dropout samples (draw 0 seeded by the request id
   is the served one), one forward of the rows that could enter the slate — on the same batch. With exploration
   the "model" stage is the feature building and the "explore" stage all of the model work.
5. sort by score (descending; ties by candidate order) and cut to ``top_n``; with exploration at most
   ``budget`` explored items stay inside ``top_n`` (``apply_budget``).

Exploration is honest: an item is *explored* only when exploration put it into the slate — it is shown, it would
not be in the greedy top_n (by pCTR), and its explored score ŷ_e beat a greedy item's pCTR. Only such items rank by
ŷ_e; every other item ranks by its pCTR, so a raised score of an item greedy shows anyway is neither flagged,
counted against the budget, nor logged as exploration, and a response without a flag is exactly the greedy one.
(A request whose top_n covers every candidate therefore never explores.) Each explored response carries, per
shown slot, the probability that the policy puts that item there, estimated over its M draws and replayable from
the request id (``propensity``; LONGRANK_EXPLORE_PROPENSITY_DRAWS).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from models.age import AGEParams
from models.bandits.served import age_slate
from models.features import RetrievedLike, build_batch
from models.ranker import score
from retrieval.events import empty_behaviors
from retrieval.gsu import HardSearch
from retrieval.history_view import HistoryView
from retrieval.impressions import ImpressionCounter
from retrieval.store import BehaviorStore, StoreError, UserHistory
from serving.logs import log_swallowed
from serving.metrics import Metrics
from serving.model_state import LoadedModel

log = logging.getLogger("longrank.pipeline")


@dataclass
class Ranked:
    order: npt.NDArray[np.int64]  # candidate indices, best first, cut to top_n
    pctr: npt.NDArray[np.float32]  # [C] model probability of every candidate (input order)
    score: npt.NDArray[np.float32]  # [C] ranking score (pctr, or the explored score where explored)
    explored: npt.NDArray[np.bool_]  # [C]
    degraded: bool
    model_version: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    explored_score: npt.NDArray[np.float32] | None = None  # [C] ŷ_e where the row moved, else pctr (explored only)
    eligible: npt.NDArray[np.bool_] | None = None  # [C] under the impression limit (explored only)
    exploration: dict[str, Any] | None = None  # the policy and its parameters when explored, else None
    propensity: npt.NDArray[np.float64] | None = None  # [top_n] P(shown item at its slot) (explored, draws > 0)


@dataclass(frozen=True)
class ExplorePolicy:
    """How a request is explored: AGE's parameters, the budget inside top_n, the impression limit."""

    params: AGEParams
    budget: int = 2
    max_impressions: int = 3000
    propensity_draws: int = 16  # M Monte-Carlo draws of the policy per response (0 = no propensities)
    name: str = ""  # the served policy (LONGRANK_EXPLORE_POLICY); default: the AGE policy of ``params``

    def describe(self, gated: bool) -> dict[str, Any]:
        return {**self.params.to_dict(), "policy": self.name or self.params.policy, "budget": self.budget,
                "max_impressions": self.max_impressions, "gate": "dgu" if gated else "none",
                "propensity_draws": self.propensity_draws}  # fmt: skip


def request_seed(request_id: str) -> int:
    """The dropout draws of a request are seeded by its id, so a logged request can be replayed exactly."""
    return int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "little") & (2**63 - 1)


class Ranker:
    def __init__(self, read_store: BehaviorStore, metrics: Metrics,
                 impressions: ImpressionCounter | None = None) -> None:  # fmt: skip
        self.store = read_store
        self.metrics = metrics
        self.impressions = impressions  # per-item impression counts (exploration eligibility)

    def read(self, model: LoadedModel, user_id: str, cats: npt.NDArray[np.int64], *,
             full: bool = False) -> tuple[UserHistory | None, str]:  # fmt: skip
        """One read of what the model needs (``full``: the whole sequence too, e.g. for the explainer); on a store
        error (None, the error's kind), counted and logged."""
        cfg = model.config
        hard = isinstance(model.gsu, HardSearch)
        try:
            history = self.store.read(
                user_id,
                recent=cfg.short_len,
                categories=np.unique(cats).tolist() if hard else (),
                per_category=cfg.long_k if hard else None,
                full=full or model.reads_full_history,
            )
        except StoreError as exc:
            self.metrics.store_errors.labels("read", type(exc).__name__).inc()
            log_swallowed(log, "history read (degraded)", exc, where=exc.where)
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
        *,
        explore_policy: ExplorePolicy | None = None,
        request_id: str = "",
    ) -> Ranked:
        clock = int(time.time()) if now is None else now
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        history, _ = self.read(model, user_id, cats)
        t1 = time.perf_counter()
        timings["store"] = (t1 - t0) * 1e3

        degraded = history is None
        records = empty_behaviors()
        if history is not None:
            records = history.full if history.full is not None else history.recent
        behaviours = HistoryView(records)  # what the GSU and the statistics both derive from it, once
        retrieved: RetrievedLike | None = None
        if isinstance(model.gsu, HardSearch):
            by_category = history.by_category if history is not None else {}
            retrieved = model.gsu.search_lists(by_category, items, cats)
        elif model.gsu is not None:
            retrieved = model.gsu.search(behaviours, items, cats)
        t2 = time.perf_counter()
        timings["gsu"] = (t2 - t1) * 1e3

        if explore_policy is not None:
            return self._explore(model, user_id, behaviours, items, cats, clock, retrieved, top_n, explore_policy,
                                 request_id, degraded, timings, t2)  # fmt: skip
        pctr = score(model.artifact.model, behaviours, items, cats, clock, model.gsu, lookups=model.artifact.lookups,
                     retrieved=retrieved, user_id=user_id)
        t3 = time.perf_counter()
        timings["model"] = (t3 - t2) * 1e3

        ranking_score = pctr
        order = np.lexsort((np.arange(len(items)), -ranking_score))[:top_n].astype(np.int64)
        self._observe(timings, degraded)
        return Ranked(order, pctr, ranking_score, np.zeros(len(items), dtype=bool), degraded, model.version, timings)

    def _observe(self, timings: dict[str, float], degraded: bool) -> None:
        for stage, ms in timings.items():
            self.metrics.stage.labels(stage).observe(ms / 1e3)
        if degraded:
            self.metrics.degraded.inc()

    def eligible(self, items: npt.NDArray[np.int64], limit: int) -> npt.NDArray[np.bool_]:
        """Items with fewer than ``limit`` impressions; none when the counts cannot be read (no counter, or an
        unreachable store: without the counts the limit cannot be honoured, so nothing is explored)."""
        if self.impressions is None:
            return np.zeros(len(items), dtype=bool)
        try:
            counts = self.impressions.counts(items)
        except StoreError as exc:
            self.metrics.store_errors.labels("impressions", type(exc).__name__).inc()
            log_swallowed(log, "impression counts (nothing explored)", exc, where=exc.where)
            return np.zeros(len(items), dtype=bool)
        out: npt.NDArray[np.bool_] = counts < limit
        return out

    def _explore(
        self, model: LoadedModel, user_id: str, behaviours: HistoryView, items: npt.NDArray[np.int64],
        cats: npt.NDArray[np.int64],
        clock: int, retrieved: RetrievedLike | None, top_n: int, policy: ExplorePolicy, request_id: str,
        degraded: bool, timings: dict[str, float], t2: float,
    ) -> Ranked:
        batch = build_batch([behaviours], np.zeros(len(items), dtype=np.int64), items, cats, clock, model.config,
                            model.gsu, retrieved=None if retrieved is None else [retrieved],
                            lookups=model.artifact.lookups, user_ids=[user_id])  # fmt: skip
        t3 = time.perf_counter()
        timings["model"] = (t3 - t2) * 1e3
        eligible = self.eligible(items, policy.max_impressions)
        dgu = model.artifact.dgu
        res = age_slate(model.artifact.model, batch, policy.params, top_n=top_n, budget=policy.budget,
                        seed=request_seed(request_id), draws=policy.propensity_draws, dgu=dgu, eligible=eligible)
        order, explored = res.order, res.explored
        timings["explore"] = (time.perf_counter() - t3) * 1e3
        self._observe(timings, degraded)
        self.metrics.explored.inc(int(explored[order].sum()))
        return Ranked(order, res.pctr, res.ranking, explored, degraded, model.version, timings,
                      explored_score=res.explored_score, eligible=eligible,
                      exploration=policy.describe(dgu is not None), propensity=res.propensity)  # fmt: skip
