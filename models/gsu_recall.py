"""How well each General Search Unit finds what a lifelong history holds for a sample (``experiment``, ``bench gsu``).

Two measures over the samples of a split, per search:

- ``target_recall``: of the samples whose target item occurs in their history (a re-engagement), the share whose
  retrieved K slots hold at least one of the target's own behaviours;
- ``evidence_recall`` (datasets with ground truth, the item-interest generator's ``truth_items.parquet``): a sample's
  evidence is its history's behaviours of the target item and of the target's true taste neighbours; the share of
  it retrieved, |retrieved ∩ evidence| / min(K, |evidence|), averaged over the samples that have any.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from models.batches import history_groups
from models.data.samples import Samples
from models.features import Searcher

TRUTH_FILE = "truth_items.parquet"


def read_truth_neighbours(data_dir: str | Path) -> dict[int, npt.NDArray[np.int64]] | None:
    """item id -> its true taste neighbours, from a dataset's ground truth (None when it has none)."""
    path = Path(data_dir) / TRUTH_FILE
    if not path.is_file():
        return None
    frame = pd.read_parquet(path, columns=["item_id", "neighbours"])
    return {int(i): np.asarray(n, dtype=np.int64) for i, n in zip(frame["item_id"], frame["neighbours"], strict=True)}


def gsu_recall(
    samples: Samples,
    searches: Mapping[str, Searcher],
    neighbours: Mapping[int, npt.NDArray[np.int64]] | None = None,
    split: str = "test",
    max_samples: int = 4000,
) -> dict[str, dict[str, Any]]:
    """{search name: {"target_recall", "target_samples", "evidence_recall", "evidence_samples"}} on the first
    ``max_samples`` samples of ``split`` (its order: by user, then time)."""
    part = samples.split(split)
    rows = np.arange(min(len(part), max_samples))
    hits = {name: [0, 0, 0.0, 0] for name in searches}  # target hits, target samples, evidence sum, evidence samples
    for members in history_groups(part, rows):
        first = members[0]
        history = samples.histories[int(part.user[first])][: int(part.hist_len[first])]
        if len(history) == 0:
            continue
        items, cats = part.item[members], part.category[members].astype(np.int64)
        h_items = np.asarray(history["item_id"], dtype=np.int64)
        evidence = []
        for item in items.tolist():
            wanted = np.array([item], dtype=np.int64)
            if neighbours is not None and item in neighbours:
                wanted = np.concatenate([wanted, neighbours[item]])
            evidence.append(np.flatnonzero(np.isin(h_items, wanted)))
        has_target = np.isin(items, h_items)
        for name, search in searches.items():
            found = search.search(history, items, cats)
            got_item = np.asarray(found.item_id)
            mask = np.asarray(found.mask)
            index = np.asarray(getattr(found, "index", np.full(mask.shape, -1)))
            counts = hits[name]
            for j in range(len(items)):
                if has_target[j]:
                    counts[1] += 1
                    counts[0] += int(np.any(mask[j] & (got_item[j] == items[j])))
                if neighbours is not None and len(evidence[j]):
                    taken = np.isin(index[j][mask[j]], evidence[j]).sum()
                    counts[2] += taken / min(mask.shape[1], len(evidence[j]))
                    counts[3] += 1
    out: dict[str, dict[str, Any]] = {}
    for name, (t_hit, t_n, e_sum, e_n) in hits.items():
        out[name] = {
            "target_recall": round(t_hit / t_n, 4) if t_n else None,
            "target_samples": t_n,
            "evidence_recall": round(e_sum / e_n, 4) if e_n else None,
            "evidence_samples": e_n,
        }
    return out
