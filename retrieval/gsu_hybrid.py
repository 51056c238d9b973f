"""The hybrid General Search Unit, and the one place that builds a GSU from a model's settings.

``HybridSearch`` fills each candidate's K slots from three searches, deduplicated, in this order:

1. item hits: the target item's own behaviours, most recent first, at most ``item_hits`` (an exact re-engagement
   is the strongest evidence a lifelong history holds, and neither hard nor soft search is sure to keep it:
   hard search keeps only the latest K of the category, soft search ranks it among look-alikes);
2. the soft search's top behaviours (items close to the target in the item-vector space), other than the target
   item's own;
3. the hard search's latest behaviours of the target's category, other than those already taken.

Of the slots the item hits leave, the soft search gets half and the category the rest; a part that has fewer
behaviours leaves its slots to the other. ``Retrieved.kind`` says which search found each slot.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from retrieval.gsu import HardSearch, History, Retrieved, SoftSearch, gather
from retrieval.gsu_kinds import KIND_CATEGORY, KIND_ITEM, KIND_SOFT
from retrieval.history_view import HistoryView
from retrieval.item_index import ItemIndex

I64 = npt.NDArray[np.int64]


def item_hits(history: History, cand_items: I64, k: int) -> I64:
    """[C, k] positions of each candidate item's latest k behaviours in ``history``, most recent first (-1 pad)."""
    out = np.full((len(cand_items), k), -1, dtype=np.int64)
    if k == 0 or len(history) == 0 or len(cand_items) == 0:
        return out
    distinct, inverse = np.unique(cand_items, return_inverse=True)
    which, position = HistoryView.of(history).find_items(distinct)
    if len(which) == 0:
        return out
    order = np.lexsort((-position, which))  # by item, newest first
    which, position = which[order], position[order]
    starts = np.searchsorted(which, np.arange(len(distinct)))
    rank = np.arange(len(which)) - starts[which]
    keep = rank < k
    per_item = np.full((len(distinct), k), -1, dtype=np.int64)
    per_item[which[keep], rank[keep]] = position[keep]
    return per_item[inverse.reshape(-1)]


def _compact(positions: I64, keep: npt.NDArray[np.bool_]) -> tuple[I64, I64]:
    """Rows of ``positions`` with the kept entries moved to the front (order kept): (compacted, count per row)."""
    order = np.argsort(~keep, axis=1, kind="stable")
    compacted = np.take_along_axis(np.where(keep, positions, -1), order, axis=1)
    return compacted, keep.sum(axis=1)


def _in_rows(values: I64, sets: I64) -> npt.NDArray[np.bool_]:
    """[C, a] whether values[c, j] >= 0 occurs in sets[c] ([C, b]; -1 = empty), by one flat binary search."""
    c = values.shape[0]
    span = int(max(values.max(initial=0), sets.max(initial=0))) + 2
    base = (np.arange(c, dtype=np.int64) * span)[:, None]
    flat = (np.sort(np.where(sets >= 0, sets, span - 1), axis=1) + base).reshape(-1)  # rows sorted, then ascending
    keys = (values + base).reshape(-1)
    pos = np.minimum(np.searchsorted(flat, keys), len(flat) - 1)
    found: npt.NDArray[np.bool_] = ((flat[pos] == keys) & (values.reshape(-1) >= 0)).reshape(values.shape)
    return found


class HybridSearch:
    """Item hits ∪ soft top ∪ category latest, deduplicated (module docstring)."""

    def __init__(self, soft: SoftSearch | None, k: int, max_item_hits: int) -> None:
        if k < 1 or max_item_hits < 0:
            raise ValueError(f"k={k} must be >= 1 and max_item_hits={max_item_hits} >= 0")
        self.k, self.max_item_hits = k, min(max_item_hits, k)
        self.soft = soft
        self.hard = HardSearch(k)

    def search(self, history: History, cand_items: npt.ArrayLike, cand_cats: npt.ArrayLike) -> Retrieved:
        items = np.asarray(cand_items, dtype=np.int64).reshape(-1)
        cats = np.asarray(cand_cats, dtype=np.int64).reshape(-1)
        k, c = self.k, len(items)
        history = HistoryView.of(history)
        hits = item_hits(history, items, self.max_item_hits)  # [C, h]
        n_hits = (hits >= 0).sum(axis=1)
        h_items = history.items

        def other_items(index: I64) -> tuple[I64, I64]:  # drop the target item's own behaviours, compact
            safe = np.maximum(index, 0)
            keep = (index >= 0) & (h_items[safe] != items[:, None]) if len(h_items) else index >= 0
            return _compact(index, keep)

        soft, n_soft = (other_items(self.soft.positions(history, items, cats)) if self.soft is not None
                        else (np.full((c, 0), -1, np.int64), np.zeros(c, np.int64)))  # fmt: skip
        cat_index = self.hard.positions(history, items, cats)
        cat, n_cat = other_items(np.where(_in_rows(cat_index, soft), -1, cat_index) if soft.shape[1] else cat_index)
        rest = k - n_hits
        q_soft = np.minimum(n_soft, np.maximum((rest + 1) // 2, rest - n_cat))
        q_cat = np.minimum(n_cat, rest - q_soft)
        slot = np.arange(k)[None, :]
        in_soft = (slot >= n_hits[:, None]) & (slot < (n_hits + q_soft)[:, None])
        in_cat = (slot >= (n_hits + q_soft)[:, None]) & (slot < (n_hits + q_soft + q_cat)[:, None])
        index = np.full((c, k), -1, dtype=np.int64)
        kind = np.full((c, k), KIND_ITEM, dtype=np.int64)
        index[:, : hits.shape[1]] = hits
        row, col = np.nonzero(in_soft)
        index[row, col] = soft[row, col - n_hits[row]]
        kind[row, col] = KIND_SOFT
        row, col = np.nonzero(in_cat)
        index[row, col] = cat[row, col - (n_hits + q_soft)[row]]
        kind[row, col] = KIND_CATEGORY
        found = gather(history, index)
        return Retrieved(found.index, found.item_id, found.category_id, found.ts, found.action, found.mask, kind)


def build_gsu(
    kind: str, k: int, index: ItemIndex | None = None, nprobe: int = 16, item_hits: int = 16
) -> HardSearch | SoftSearch | HybridSearch | None:
    """The GSU of a model's settings (ModelConfig.gsu, long_k, nprobe, item_hits): none, hard, soft or hybrid.
    Soft and hybrid search need the item index over the item tables' vectors."""
    if kind == "none":
        return None
    if kind == "hard":
        return HardSearch(k)
    if index is None:
        raise ValueError(f"gsu={kind!r} needs the item index (retrieval.item_index.ItemIndex)")
    soft = SoftSearch(index, k, min(nprobe, index.n_clusters))
    if kind == "soft":
        return soft
    if kind == "hybrid":
        return HybridSearch(soft, k, item_hits)
    raise ValueError(f"gsu={kind!r} is unknown; expected none, hard, soft or hybrid")
