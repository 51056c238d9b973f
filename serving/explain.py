"""The retrieval explainer behind ``POST /v1/explain``: why each candidate scored what it scored.

For one user and a few candidates it runs the ranking's own steps — one store read, the GSU, ``models.ranker.score``
(the function ``/v1/rank`` scores with, so the scores are the same) — and reports, per candidate:

- ``retrieved``: the behaviours the GSU handed to the long branch, in the GSU's order, each with its position in
  the whole history, item, category, time, age, action, the search that found it (``category``: SIM's hard search,
  the latest behaviours of the candidate's category; ``item``: one of the candidate item's own earlier behaviours;
  ``soft``: an item close to the candidate in the item-vector space) and the ESU's attention weight (mean over the
  heads and per head; each head's weights sum to 1 over the retrieved behaviours);
- ``short_attention``: the short branch's (DIN) attention weight of each behaviour of the short window (the last
  ``short_len`` behaviours, listed once in ``history.short``; null for a mean-pooling model);
- ``stats``: the target-aware history statistics the model reads (raw values, before the model standardises them);
- ``score_short_only`` and ``long_contribution``: the score the same model gives when the user's history is only
  its last ``short_len`` behaviours (same feature building and scoring; the GSU and the statistics then see only
  those behaviours), and ``score − score_short_only``: what the history beyond the short window adds;
- ``category_density``: how often the candidate's category occurs in each bin of the timeline (``history.bins``).

The explainer reads the whole sequence and searches it with ``gsu.search`` so that every position maps onto the
full timeline. Hard search in ``/v1/rank`` searches the store's per-category lists instead (``search_lists``); both
select the same behaviours whenever a list holds its category's latest ``long_k`` (the lists keep
``LONGRANK_PER_CATEGORY`` ≥ K).

Exploration is not applied: the explanation is of the model's pCTR, and ``score`` equals ``pctr``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from models.features import build_batch
from models.ranker import attention, score
from retrieval.events import Behaviors, empty_behaviors
from retrieval.gsu_kinds import KIND_CATEGORY, KIND_NAMES, KIND_SOFT
from retrieval.history_stats import stat_names
from retrieval.history_view import HistoryView
from serving.model_state import LoadedModel
from serving.pipeline import Ranker

TIMELINE_BINS = 120  # bins of the whole-history timeline (fewer when the history is shorter)
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Explained:
    payload: dict[str, Any]  # the response body (JSON-ready)
    pctr: npt.NDArray[np.float32]  # [C] in request order
    order: I64  # candidate indices, best first, cut to top_n
    degraded: bool


def explain(
    ranker: Ranker,
    model: LoadedModel,
    user_id: str,
    items: I64,
    cats: I64,
    top_n: int,
    *,
    now: int | None = None,
    unknown_category: int | None = None,
) -> Explained:
    """Explain the ranking of ``items`` (categories ``cats``) for ``user_id``; ``unknown_category`` is the value
    that stands for "no category given" (reported as null)."""
    clock = int(time.time()) if now is None else now
    cfg = model.config
    net, lookups = model.artifact.model, model.artifact.lookups
    history, _ = ranker.read(model, user_id, cats, full=True)
    degraded = history is None
    full: Behaviors = empty_behaviors()
    if history is not None and history.full is not None:
        full = history.full

    view = HistoryView(full)  # as /v1/rank: what the search, the statistics and the features derive, once
    retrieved = model.gsu.search(view, items, cats) if model.gsu is not None else None
    pctr = score(net, view, items, cats, clock, model.gsu, lookups=lookups, retrieved=retrieved,
                 user_id=user_id)  # /v1/rank's path
    short_history = full[max(0, len(full) - cfg.short_len) :]
    short_only = score(net, short_history, items, cats, clock, model.gsu, lookups=lookups, user_id=user_id)
    batch = build_batch([view], np.zeros(len(items), dtype=np.int64), items, cats, clock, cfg, model.gsu,
                        retrieved=None if retrieved is None else [retrieved], lookups=lookups,
                        user_ids=[user_id])  # fmt: skip
    weights = attention(net, batch)
    order = np.lexsort((np.arange(len(items)), -pctr))[:top_n].astype(np.int64)

    names = stat_names(cfg.stats_spec, cfg.vocabulary) if cfg.stats else []
    stats = batch.cand_stats.numpy() if batch.cand_stats is not None else None
    if stats is not None and stats.shape[1] != len(names):
        raise ValueError(f"the model reads {stats.shape[1]} statistics but stat_names gives {len(names)}")
    edges = _bin_edges(len(full))
    short_start = len(full) - len(short_history)
    rows = []
    for rank, c in enumerate(order.tolist(), start=1):
        item, cat = int(items[c]), int(cats[c])
        rows.append({
            "item_id": item,
            "category_id": None if cat == unknown_category else cat,
            "rank": rank,
            "score": float(pctr[c]),
            "pctr": float(pctr[c]),
            "score_short_only": float(short_only[c]),
            "long_contribution": float(pctr[c]) - float(short_only[c]),
            "retrieved": _retrieved(retrieved, weights.long, c, item, clock, cfg.gsu),
            "short_attention": None if weights.short is None else
                weights.short[c, : len(short_history)].numpy().astype(float).tolist(),
            "stats": {} if stats is None else dict(zip(names, stats[c].astype(float).tolist(), strict=True)),
            "category_density": _density(full, cat, edges),
        })  # fmt: skip
    payload = {
        "model_version": model.version,
        "variant": cfg.variant,
        "gsu": cfg.gsu,
        "degraded": degraded,
        "now": clock,
        "history": {
            "length": len(full),
            "short_len": cfg.short_len,
            "short_start": short_start,
            "first_ts": int(full["ts"][0]) if len(full) else None,
            "last_ts": int(full["ts"][-1]) if len(full) else None,
            "bins": {"position": edges.tolist(), "ts": _edge_times(full, edges)},
            "short": _behaviours(short_history, short_start),
        },
        "heads": cfg.heads if weights.long is not None else 0,
        "items": rows,
    }
    return Explained(payload, pctr, order, degraded)


def _retrieved(found: Any, long_w: torch.Tensor | None, c: int, item: int, now: int, gsu: str) -> list[dict[str, Any]]:
    """The GSU's behaviours of candidate ``c``, in the GSU's order, with their ESU weights."""
    if found is None:
        return []
    mask = np.asarray(found.mask[c])
    kinds = getattr(found, "kind", None)
    default_kind = KIND_CATEGORY if gsu == "hard" else KIND_SOFT
    heads = long_w[c].numpy() if long_w is not None else None  # [H,K]
    out = []
    for slot in np.flatnonzero(mask).tolist():
        ts = int(found.ts[c, slot])
        kind = default_kind if kinds is None else int(kinds[c, slot])
        per_head = heads[:, slot].astype(float).tolist() if heads is not None else []
        out.append({
            "slot": slot,
            "position": int(found.index[c, slot]),
            "item_id": int(found.item_id[c, slot]),
            "category_id": int(found.category_id[c, slot]),
            "ts": ts,
            "age_s": now - ts,
            "action": int(found.action[c, slot]),
            "kind": KIND_NAMES[kind],
            "same_item": int(found.item_id[c, slot]) == item,
            "attention": float(np.mean(per_head)) if per_head else None,
            "attention_heads": per_head,
        })  # fmt: skip
    return out


def _behaviours(history: Behaviors, start: int) -> list[dict[str, Any]]:
    """Behaviours as JSON rows, oldest first, ``start`` being the position of the first in the whole history."""
    columns = zip(history["item_id"].tolist(), history["category_id"].tolist(), history["ts"].tolist(),
                  history["action"].tolist(), strict=True)  # fmt: skip
    return [{"position": start + j, "item_id": i, "category_id": c, "ts": t, "action": a}
            for j, (i, c, t, a) in enumerate(columns)]


def _bin_edges(length: int) -> I64:
    """Position edges of the timeline's bins: [0, …, length], at most TIMELINE_BINS bins."""
    if length == 0:
        return np.zeros(1, dtype=np.int64)
    return np.unique(np.linspace(0, length, min(TIMELINE_BINS, length) + 1).round().astype(np.int64))


def _edge_times(history: Behaviors, edges: I64) -> list[int]:
    """The time at each edge: of the behaviour at that position (the last one for the final edge)."""
    if len(history) == 0:
        return []
    ts = history["ts"].astype(np.int64)
    return ts[np.minimum(edges, len(history) - 1)].tolist()  # type: ignore[no-any-return]


def _density(history: Behaviors, category: int, edges: I64) -> list[int]:
    """Behaviours of ``category`` in each timeline bin."""
    if len(history) == 0:
        return []
    positions = np.flatnonzero(history["category_id"] == category)
    counts, _ = np.histogram(positions, bins=edges)
    return counts.astype(int).tolist()  # type: ignore[no-any-return]
