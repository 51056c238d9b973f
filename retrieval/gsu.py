"""The General Search Unit (SIM): for each candidate, the top-K behaviours of a long history that the ESU attends to.

Three searches, one result type (``Retrieved``: [C, K] arrays, most relevant first, ``index = -1`` in empty slots):

- ``HardSearch``: the latest K behaviours of the candidate's category (SIM's deployed variant), most recent first.
  ``search`` groups the full history by category once per request; ``search_lists`` reads the store's per-category
  lists (``UserHistory.by_category``, SIM's User Behavior Tree) instead.
- ``SoftSearch``: relevance ``r = key(behaviour item) · query(candidate item)``. The user's distinct item buckets go
  into a per-request Faiss ``IndexIVFFlat`` whose lists are the ItemIndex's clusters (bucket -> cluster map, no
  re-assignment; its quantizer is the ItemIndex's ``IndexFlatIP`` over the centroids). Each candidate probes the
  ``nprobe`` clusters of largest query · centroid (``ItemIndex.probe``), and batched Faiss searches over all C
  candidates score only the distinct items of those clusters and keep the best items; those expand into behaviours
  (an item seen n times is n behaviours, most recent first) until K slots are filled. Work is per distinct item:
  a 54k history of a few favourite categories holds ~6k distinct items. A history of at most ``exact_below``
  distinct items is scored exactly instead (one product; building the per-request IVF would cost more).
- ``ExactSearch``: brute force over every behaviour's key vector (Faiss ``knn``, inner product): the recall
  reference and the cost the soft search avoids.

Order inside a result: score descending, ties broken by the more recent behaviour (larger history position). Ties
between repeats of one item are always resolved so; ties between different items with exactly equal scores are too,
except when the tie sits just past the last item Faiss returned for the candidate (equal vectors in different buckets
only; then Faiss picks which item comes back).
Faiss uses its SIMD loop below 20 queries and BLAS from 20; every search here batches all candidates per call.
Thread counts are the caller's business (``faiss.omp_set_num_threads`` at start-up).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from retrieval.events import BEHAVIOR_DTYPE, Behaviors
from retrieval.gsu_expand import expand
from retrieval.history_view import Groups, HistoryView, group, stable_argsort_small
from retrieval.item_index import ItemIndex

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]
History = Behaviors | HistoryView  # a search takes the plain array or a request's view of it (same result)

__all__ = ["DEFAULT_K", "ExactSearch", "HardSearch", "History", "Retrieved", "SoftSearch", "gather", "recall_at_k",
           "stable_argsort_small"]

DEFAULT_K = 64
DEFAULT_NPROBE = 32
DEFAULT_FIRST_K = 16  # distinct items asked of Faiss in the first pass of the soft search
DEFAULT_EXACT_BELOW = 1024  # soft search scores every distinct item exactly when a history has at most this many


@dataclass(frozen=True)
class Retrieved:
    """What a GSU returns for C candidates, K slots each, most relevant first."""

    index: I64  # [C, K] positions into the history array searched (-1 = empty slot)
    item_id: I64  # [C, K] (0 where empty)
    category_id: I64
    ts: I64
    action: I64
    mask: npt.NDArray[np.bool_]  # [C, K] True where a behaviour is present
    kind: I64 | None = None  # [C, K] retrieval.gsu_kinds.KIND_* of each slot (None: the searcher's one kind)
    of_history: bool = True  # index is a position in the one history searched and the fields are its behaviour's
    #                          (False: positions inside per-category lists, HardSearch.search_lists)

    @property
    def k(self) -> int:
        return int(self.index.shape[1])

    def __len__(self) -> int:
        return int(self.index.shape[0])


def gather(history: History, index: I64) -> Retrieved:
    """Fill a Retrieved from [C, K] history positions (-1 = empty)."""
    mask = index >= 0
    if len(history) == 0:
        zeros = np.zeros(index.shape, dtype=np.int64)
        return Retrieved(index, zeros, zeros.copy(), zeros.copy(), zeros.copy(), mask)
    view = HistoryView.of(history)
    safe = np.where(mask, index, 0)

    def field(column: npt.NDArray[np.integer[Any]]) -> I64:
        # the view's contiguous column: measured 4x faster than fancy-indexing the packed records' strided view
        out = np.take(column, safe).astype(np.int64, copy=False)
        out[~mask] = 0
        return out

    return Retrieved(index, field(view.items), field(view.categories), field(view.ts), field(view.actions), mask)


def recall_at_k(approx: Retrieved, exact: Retrieved) -> float:
    """Mean over candidates of |approx ∩ exact| / |exact| by history position; empty exact sets are skipped.

    Returns 1.0 when every candidate's exact set is empty (nothing to miss)."""
    if approx.index.shape[0] != exact.index.shape[0]:
        raise ValueError(f"approx has {approx.index.shape[0]} candidates, exact has {exact.index.shape[0]}")
    a = np.where(approx.mask, approx.index, -1)
    e = np.where(exact.mask, exact.index, -2)  # -1 never equals -2, so empty slots never match
    hits = (e[:, :, None] == a[:, None, :]).any(axis=2).sum(axis=1)
    sizes = exact.mask.sum(axis=1)
    present = sizes > 0
    if not present.any():
        return 1.0
    return float(np.mean(hits[present] / sizes[present]))


def _check_candidates(cand_items: npt.ArrayLike, cand_cats: npt.ArrayLike | None) -> tuple[I64, I64]:
    items = np.asarray(cand_items, dtype=np.int64)
    if items.ndim != 1:
        raise ValueError(f"cand_items has shape {items.shape}; must be a 1-D array of item ids")
    if cand_cats is None:
        return items, np.zeros_like(items)
    cats = np.asarray(cand_cats, dtype=np.int64)
    if cats.shape != items.shape:
        raise ValueError(f"cand_cats has shape {cats.shape}; must match cand_items {items.shape}")
    return items, cats


def _check_history(history: History) -> HistoryView:
    if isinstance(history, HistoryView):
        return history
    if not isinstance(history, np.ndarray) or history.dtype != BEHAVIOR_DTYPE or history.ndim != 1:
        raise ValueError("history must be a 1-D structured array of retrieval.events.BEHAVIOR_DTYPE")
    return HistoryView(history)


def _check_k(k: int) -> int:
    if k < 1:
        raise ValueError(f"k={k} must be >= 1")
    return k


def _latest_k(groups: Groups, group_of_cand: I64, k: int) -> I64:
    """[C, k] positions of the latest k members of each candidate's group (-1 where the group has fewer, or where
    the candidate has no group: group_of_cand = -1), most recent first. ``groups`` must not be empty."""
    slot = np.arange(k, dtype=np.int64)[None, :]
    has = group_of_cand >= 0
    g = np.where(has, group_of_cand, 0)
    n = np.where(has, groups.counts[g], 0)[:, None]
    valid = slot < n
    where = np.where(valid, groups.starts[g][:, None] + n - 1 - slot, 0)
    return np.where(valid, groups.order[where], -1).astype(np.int64)


class HardSearch:
    """The latest K behaviours of the candidate's category, most recent first (SIM hard search)."""

    def __init__(self, k: int = DEFAULT_K) -> None:
        self.k = _check_k(k)

    def search(self, history: History, cand_items: npt.ArrayLike, cand_cats: npt.ArrayLike) -> Retrieved:
        """Group the full history by category once (the view keeps the grouping), then read each candidate's
        category group."""
        view = _check_history(history)
        return gather(view, self.positions(view, cand_items, cand_cats))

    def positions(self, view: HistoryView, cand_items: npt.ArrayLike, cand_cats: npt.ArrayLike) -> I64:
        """[C, K] the history positions ``search`` gathers (-1 = empty slot)."""
        _, cats = _check_candidates(cand_items, cand_cats)
        if len(view) == 0:
            return np.full((len(cats), self.k), -1, dtype=np.int64)
        return _latest_k(view.category_groups, view.category_groups.find(cats), self.k)

    def search_lists(
        self, by_category: Mapping[int, Behaviors], cand_items: npt.ArrayLike, cand_cats: npt.ArrayLike
    ) -> Retrieved:
        """Same selection from per-category lists (oldest first each); ``index`` is the position inside the list of
        the candidate's category. Equals ``search`` whenever each list holds its category's latest >= K behaviours."""
        _, cats = _check_candidates(cand_items, cand_cats)
        distinct, inverse = np.unique(cats, return_inverse=True)
        k = self.k
        rows = np.full((len(distinct), k), -1, dtype=np.int64)
        names = ("item_id", "category_id", "ts", "action")
        fields = {name: np.zeros((len(distinct), k), dtype=np.int64) for name in names}
        for g, cat in enumerate(distinct.tolist()):
            records = by_category.get(cat)
            if records is None or len(records) == 0:
                continue
            _check_history(records)
            n = min(len(records), k)
            positions = np.arange(len(records) - 1, len(records) - 1 - n, -1, dtype=np.int64)
            rows[g, :n] = positions
            for name, out in fields.items():
                out[g, :n] = records[name][positions]
        inverse = inverse.reshape(-1)
        index = rows[inverse]
        return Retrieved(
            index,
            fields["item_id"][inverse],
            fields["category_id"][inverse],
            fields["ts"][inverse],
            fields["action"][inverse],
            index >= 0,
            of_history=False,
        )


class ExactSearch:
    """Brute force: every behaviour's key vector against every candidate's query (one Faiss ``knn`` call)."""

    def __init__(self, index: ItemIndex, k: int = DEFAULT_K) -> None:
        self.index = index
        self.k = _check_k(k)

    def search(
        self, history: History, cand_items: npt.ArrayLike, cand_cats: npt.ArrayLike | None = None
    ) -> Retrieved:
        view = _check_history(history)
        items, _ = _check_candidates(cand_items, cand_cats)
        n_hist, n_cand, k = len(view), len(items), self.k
        if n_hist == 0 or n_cand == 0:
            return gather(view, np.full((n_cand, k), -1, dtype=np.int64))
        queries = self.index.query_vectors(items)
        buckets, groups = bucket_groups(view, self.index)
        keys = self.index.keys[buckets]
        kk = min(k, n_hist)
        scores, _ = faiss.knn(queries, keys, kk, metric=faiss.METRIC_INNER_PRODUCT)
        # Faiss gives the K-th best score; which of several behaviours scoring exactly that it keeps is not
        # specified (repeats of an item, or items with equal vectors). Take every distinct item scoring at least
        # that and expand them like the soft search does: ties go to the most recent behaviours.
        distinct_scores = queries @ self.index.keys[groups.keys].T  # [C, U]
        kth = scores[:, kk - 1]
        # numpy's and Faiss's BLAS may round the same product an ulp apart: include the K-th score's neighbours
        floor = (kth - 1e-5 * np.maximum(1.0, np.abs(kth))).astype(np.float32)
        top, top_scores = _rows_at_least(distinct_scores, floor)
        return gather(view, expand(groups, top_scores, top, k))


def bucket_groups(view: HistoryView, index: ItemIndex) -> tuple[I64, Groups]:
    """The item bucket (vocabulary row, or hashed bucket) of every behaviour and the behaviours grouped by it,
    computed once per view (the history statistics read the same vocabulary rows)."""
    if index.vocab is not None:
        return view.item_rows(index.vocab), view.item_groups(index.vocab)
    n = index.n_buckets
    rows = view.memo(("buckets", n), lambda: index.buckets(view.items))
    return rows, view.memo(("bucket_groups", n), lambda: group(rows, n))


def _rows_at_least(scores: F32, floor: F32) -> tuple[I64, F32]:
    """Per row, the columns scoring >= floor[row], best first, padded with -1 / -inf."""
    row, col = np.nonzero(scores >= floor[:, None])
    n_rows = scores.shape[0]
    per_row = np.bincount(row, minlength=n_rows)
    width = max(int(per_row.max()) if n_rows else 0, 1)
    slot = np.arange(len(row)) - (np.cumsum(per_row) - per_row)[row]
    top = np.full((n_rows, width), -1, dtype=np.int64)
    top_scores = np.full((n_rows, width), -np.inf, dtype=np.float32)
    top[row, slot] = col
    top_scores[row, slot] = scores[row, col]
    order = np.argsort(-top_scores, axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)


class SoftSearch:
    """SIM soft search: IVF over the user's distinct items with the ItemIndex's centroids, then expansion into
    behaviours. ``nprobe`` clusters per candidate; ``nprobe = n_clusters`` is exact."""

    def __init__(
        self, index: ItemIndex, k: int = DEFAULT_K, nprobe: int = DEFAULT_NPROBE, *, first_k: int = DEFAULT_FIRST_K,
        exact_below: int = DEFAULT_EXACT_BELOW,
    ) -> None:
        if not 1 <= nprobe <= index.n_clusters:
            raise ValueError(f"nprobe={nprobe} must be in [1, n_clusters = {index.n_clusters}]")
        if first_k < 1:
            raise ValueError(f"first_k={first_k} must be >= 1")
        self.index = index
        self.k = _check_k(k)
        self.nprobe = nprobe
        self.first_k = first_k
        self.exact_below = exact_below

    def search(
        self, history: History, cand_items: npt.ArrayLike, cand_cats: npt.ArrayLike | None = None
    ) -> Retrieved:
        view = _check_history(history)
        return gather(view, self.positions(view, cand_items, cand_cats))

    def positions(self, view: HistoryView, cand_items: npt.ArrayLike, cand_cats: npt.ArrayLike | None = None) -> I64:
        """[C, K] the history positions ``search`` gathers (-1 = empty slot)."""
        items, _ = _check_candidates(cand_items, cand_cats)
        k, n_cand = self.k, len(items)
        if len(view) == 0 or n_cand == 0:
            return np.full((n_cand, k), -1, dtype=np.int64)
        idx = self.index
        # 1. Behaviours grouped by item bucket (a bucket is one vector, hence one score), positions oldest first.
        _, groups = bucket_groups(view, idx)
        n_distinct = len(groups.keys)
        queries = idx.query_vectors(items)
        if n_distinct <= self.exact_below:  # few distinct items: scoring them all is cheaper than building an IVF
            return expand(groups, *_exact_top(queries, idx.keys[groups.keys], k), k)
        # 2. The distinct buckets into a per-request IVF whose lists are the ItemIndex's clusters.
        ivf = faiss.IndexIVFFlat(idx.quantizer, idx.dim, idx.n_clusters, faiss.METRIC_INNER_PRODUCT)
        vectors = np.ascontiguousarray(idx.keys[groups.keys])
        lists = idx.cluster_of_bucket[groups.keys].astype(np.int64)
        ids = np.arange(n_distinct, dtype=np.int64)
        ivf.add_core(n_distinct, faiss.swig_ptr(vectors), faiss.swig_ptr(ids), faiss.swig_ptr(lists))
        ivf.nprobe = self.nprobe
        # 3. The candidates' nprobe nearest clusters (query · centroid), once for both passes below.
        probes = idx.probe(queries, self.nprobe)
        # 4. Top distinct items among the probed clusters. Repeats usually fill K slots from a few items, and
        # Faiss's cost grows with the size of its result heap: ask for ``first_k`` items, then again for K items
        # only for the candidates whose first items do not fill K behaviours.
        kk = min(k, n_distinct)
        first = min(self.first_k, kk)
        scores, top = _search_preassigned(ivf, queries, first, probes)
        if first < kk:
            filled = np.where(top >= 0, groups.counts[np.maximum(top, 0)], 0).sum(axis=1) >= k
            again = np.flatnonzero(~filled & (top[:, -1] >= 0))
            if len(again):
                wide_scores = np.full((n_cand, kk), -np.inf, dtype=np.float32)
                wide_top = np.full((n_cand, kk), -1, dtype=np.int64)
                wide_scores[:, :first], wide_top[:, :first] = scores, top
                wide_scores[again], wide_top[again] = _search_preassigned(ivf, queries[again], kk, probes[again])
                scores, top = wide_scores, wide_top
        # 5. Items -> behaviours, most recent first, until K slots are filled.
        return expand(groups, scores, top, k)


def _exact_top(queries: F32, keys: F32, k: int) -> tuple[F32, I64]:
    """[C, min(k, n)] the best of ``n`` keys for every query, by score rounded to 2^-20 and then the lower key index:
    a total order, so a candidate's result is the same whatever other candidates share the call (BLAS rounds a
    product a little differently for other batch shapes, and items without a vector all score exactly 0)."""
    n = keys.shape[0]
    scores = queries @ keys.T  # [C, n]
    ranked = np.rint(scores.astype(np.float64) * 2**20).astype(np.int64) * (1 << 21) - np.arange(n)  # unique keys
    kk = min(k, n)
    top = np.argpartition(-ranked, kk - 1, axis=1)[:, :kk] if kk < n else np.tile(np.arange(n), (len(scores), 1))
    order = np.argsort(-np.take_along_axis(ranked, top, axis=1), axis=1)
    top = np.take_along_axis(top, order, axis=1)
    rounded = (np.take_along_axis(ranked, top, axis=1) >> 21).astype(np.float64) / 2**20
    return rounded.astype(np.float32), top.astype(np.int64)


def _search_preassigned(ivf: Any, queries: F32, k: int, probes: I64) -> tuple[F32, I64]:
    """Faiss's numpy wrapper of IndexIVF.search_preassigned (its type stubs describe the raw SWIG signature)."""
    scores, ids = ivf.search_preassigned(queries, k, probes, None)
    return np.asarray(scores, dtype=np.float32), np.asarray(ids, dtype=np.int64)
