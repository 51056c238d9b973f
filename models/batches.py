"""Mini-batches of samples for training and evaluation, built with ``models.features.build_batch`` — the very
function serving uses — from each user's history prefix ``histories[user][:hist_len]`` (a view, never a copy).

Every sample is its own user row (U = C, ``user_of = arange``): samples of one user at different times have
different histories and a different "now". Two ways to get a batch:

- ``FeatureCache``: the features of a whole split built once (chunk by chunk, with a progress bar) and sliced per
  mini-batch. Used whenever the features do not change during training (short sequence, hard search; the soft
  search between two refreshes of its index). The GSU is the costly part of feature building on long histories,
  so this pays it once per split instead of once per epoch.
- ``build_rows``: build on the fly (din_long, whose [U, L] whole-history tensors are too large to keep for a
  split).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt
import torch
from tqdm import tqdm

from models.config import ModelConfig
from models.data.samples import Samples, Split
from models.features import NO_LOOKUPS, Batch, Lookups, RetrievedLike, Searcher, build_batch
from retrieval.events import Behaviors
from retrieval.history_stats import StatsSpec, history_stats, stat_names
from retrieval.item_tables import ItemTables

Rows = npt.NDArray[np.intp]


def build_rows(
    samples: Samples,
    split: Split,
    rows: Rows,
    config: ModelConfig,
    gsu: Searcher | None,
    max_len: int | None,
    lookups: Lookups = NO_LOOKUPS,
) -> Batch:
    """The Batch of ``split``'s samples at ``rows``; histories cut to their last ``max_len`` behaviours if given."""
    histories = []
    for user, end in zip(split.user[rows].tolist(), split.hist_len[rows].tolist(), strict=True):
        start = 0 if max_len is None else max(0, end - max_len)
        histories.append(samples.histories[user][start:end])
    n = len(rows)
    retrieved, stats = _per_history(histories, split, rows, config, gsu, lookups)
    return build_batch(
        histories,
        np.arange(n, dtype=np.int64),
        split.item[rows],
        split.category[rows],
        split.ts[rows],
        config,
        None,
        retrieved=retrieved,
        lookups=lookups,
        stats=stats,
        user_ids=[samples.user_ids[u] for u in split.user[rows].tolist()] if config.user_dim else None,
    )


def history_groups(split: Split, rows: Rows) -> Iterator[npt.NDArray[np.intp]]:
    """Indices into ``rows`` of the samples sharing one history (same user, same history length), group by group."""
    key = split.user[rows].astype(np.int64) * (1 << 32) + split.hist_len[rows].astype(np.int64)
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if len(order) else np.zeros(0, np.intp)
    ends = np.r_[starts[1:], len(order)].astype(np.intp)
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        yield order[start:end]


def split_stats(
    samples: Samples, split: Split, spec: StatsSpec, tables: ItemTables | None, *, progress: bool = False,
    desc: str = "statistics",
) -> npt.NDArray[np.float32]:  # fmt: skip
    """retrieval.history_stats of every sample of ``split`` (whole histories), [N, F]: the strong simple baselines'
    features, computed once per shared history."""
    rows = np.arange(len(split))
    out = np.zeros((len(split), len(stat_names(spec, tables is not None))), dtype=np.float32)
    with tqdm(total=len(split), desc=desc, unit="sample", disable=not progress, leave=False) as bar:
        for members in history_groups(split, rows):
            first = members[0]
            history = samples.histories[int(split.user[first])][: int(split.hist_len[first])]
            exclude = None if split.self_action is None else split.self_action[members]
            out[members] = history_stats(history, split.item[members], split.category[members], split.ts[members],
                                         spec, tables, exclude_action=exclude)  # fmt: skip
            bar.update(len(members))
    return out


def _per_history(
    histories: list[Behaviors], split: Split, rows: Rows, config: ModelConfig, gsu: Searcher | None,
    lookups: Lookups,
) -> tuple[list[RetrievedLike] | None, npt.NDArray[np.float32] | None]:  # fmt: skip
    """One GSU search and one statistics call per distinct (user, history length) for all its samples, then one
    result row per sample.

    Neither the search nor the statistics' counts depend on "now" (the statistics' days-since do, and get each
    sample's own time), so samples sharing a history (synthetic data: every sample of a user comes after the whole
    history) share the work — the way serving does it once per request for all its candidates. The result per
    sample is exactly what a call for that sample alone returns."""
    search = config.gsu != "none" and gsu is not None
    if not search and not config.stats:
        return None, None
    if config.vocabulary and lookups.items is None:
        raise ValueError("config.vocabulary=True needs the item tables (Lookups.items, saved in the artifact)")
    out: list[RetrievedLike | None] = [None] * len(rows)
    stats = np.zeros((len(rows), config.n_stats), dtype=np.float32) if config.stats else None
    tables = lookups.items if config.vocabulary else None
    for members in history_groups(split, rows):
        history = histories[int(members[0])]
        items, cats = split.item[rows[members]], split.category[rows[members]].astype(np.int64)
        if search:
            assert gsu is not None
            found = gsu.search(history, items, cats)
            for j, member in enumerate(members.tolist()):
                out[member] = _row(found, j)
        if stats is not None:
            exclude = None if split.self_action is None else split.self_action[rows[members]]
            stats[members] = history_stats(history, items, cats, split.ts[rows[members]], config.stats_spec, tables,
                                           exclude_action=exclude)  # fmt: skip
    return ([r for r in out if r is not None] if search else None), stats


def _row(found: RetrievedLike, j: int) -> RetrievedLike:
    kind = getattr(found, "kind", None)
    return _OneRow(
        item_id=found.item_id[j : j + 1],
        category_id=found.category_id[j : j + 1],
        ts=found.ts[j : j + 1],
        action=found.action[j : j + 1],
        mask=found.mask[j : j + 1],
        kind=None if kind is None else kind[j : j + 1],
    )


@dataclass(frozen=True)
class _OneRow:
    """One candidate's slice of a GSU result ([1, K] arrays)."""

    item_id: npt.NDArray[np.int64]
    category_id: npt.NDArray[np.int64]
    ts: npt.NDArray[np.int64]
    action: npt.NDArray[np.int64]
    mask: npt.NDArray[np.bool_]
    kind: npt.NDArray[np.int64] | None


def _compact(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(torch.int32) if tensor.dtype == torch.int64 else tensor


class FeatureCache:
    """A split's features, built once; ``batch(rows)`` slices them."""

    def __init__(
        self,
        samples: Samples,
        split: Split,
        config: ModelConfig,
        gsu: Searcher | None,
        max_len: int | None,
        lookups: Lookups = NO_LOOKUPS,
        *,
        chunk: int = 4096,
        desc: str = "features",
        progress: bool = True,
    ) -> None:
        if config.full_attention:
            raise ValueError("din_long's whole-history tensors are built per batch (build_rows), not cached")
        parts: dict[str, list[torch.Tensor]] = {}
        n = len(split)
        with tqdm(total=n, desc=desc, unit="sample", disable=not progress, leave=False) as bar:
            for start in range(0, n, chunk):
                rows = np.arange(start, min(n, start + chunk))
                built = build_rows(samples, split, rows, config, gsu, max_len, lookups)
                for f in fields(built):
                    value = getattr(built, f.name)
                    if value is not None and f.name != "user_of":
                        parts.setdefault(f.name, []).append(_compact(value))
                bar.update(len(rows))
        self.n = n
        self.tensors = {name: torch.cat(chunks) for name, chunks in parts.items()}  # empty split: no tensors

    def batch(self, rows: Rows) -> Batch:
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        values: dict[str, torch.Tensor | None] = {f.name: None for f in fields(Batch)}
        for name, tensor in self.tensors.items():
            part = tensor.index_select(0, index)
            values[name] = part.long() if part.dtype == torch.int32 else part
        values["user_of"] = torch.arange(len(index), dtype=torch.int64)
        return Batch(**values)  # type: ignore[arg-type]
