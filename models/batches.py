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

from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt
import torch
from tqdm import tqdm

from models.config import ModelConfig
from models.data.samples import Samples, Split
from models.features import Batch, RetrievedLike, Searcher, build_batch
from retrieval.events import Behaviors

Rows = npt.NDArray[np.intp]


def build_rows(
    samples: Samples, split: Split, rows: Rows, config: ModelConfig, gsu: Searcher | None, max_len: int | None
) -> Batch:
    """The Batch of ``split``'s samples at ``rows``; histories cut to their last ``max_len`` behaviours if given."""
    histories = []
    for user, end in zip(split.user[rows].tolist(), split.hist_len[rows].tolist(), strict=True):
        start = 0 if max_len is None else max(0, end - max_len)
        histories.append(samples.histories[user][start:end])
    n = len(rows)
    retrieved = None
    if config.gsu != "none" and gsu is not None:
        retrieved = _search_grouped(histories, split.user[rows], split.hist_len[rows], split, rows, gsu)
    return build_batch(
        histories,
        np.arange(n, dtype=np.int64),
        split.item[rows],
        split.category[rows],
        split.ts[rows],
        config,
        None,
        retrieved=retrieved,
    )


def _search_grouped(
    histories: list[Behaviors],
    users: npt.NDArray[np.integer],
    hist_lens: npt.NDArray[np.integer],
    split: Split,
    rows: Rows,
    gsu: Searcher,
) -> list[RetrievedLike]:
    """One GSU search per distinct (user, history length) for all its samples, then one result per sample.

    The search does not depend on "now", so samples sharing a history (synthetic data: every sample of a user
    comes after the whole history) share one search — the way serving searches once per request for all its
    candidates. The result per sample is exactly what a search for that sample alone returns."""
    key = users.astype(np.int64) * (1 << 32) + hist_lens.astype(np.int64)
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if len(order) else np.zeros(0, np.intp)
    ends = np.r_[starts[1:], len(order)].astype(np.intp)
    out: list[RetrievedLike | None] = [None] * len(rows)
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        members = order[start:end]
        cats = split.category[rows[members]].astype(np.int64)
        found = gsu.search(histories[int(members[0])], split.item[rows[members]], cats)
        for j, member in enumerate(members.tolist()):
            out[member] = _row(found, j)
    return [r for r in out if r is not None]


def _row(found: RetrievedLike, j: int) -> RetrievedLike:
    return _OneRow(
        item_id=found.item_id[j : j + 1],
        category_id=found.category_id[j : j + 1],
        ts=found.ts[j : j + 1],
        action=found.action[j : j + 1],
        mask=found.mask[j : j + 1],
    )


@dataclass(frozen=True)
class _OneRow:
    """One candidate's slice of a GSU result ([1, K] arrays)."""

    item_id: npt.NDArray[np.int64]
    category_id: npt.NDArray[np.int64]
    ts: npt.NDArray[np.int64]
    action: npt.NDArray[np.int64]
    mask: npt.NDArray[np.bool_]


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
                built = build_rows(samples, split, rows, config, gsu, max_len)
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
