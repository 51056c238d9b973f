"""Training of AGE's Dynamic Gating Unit (models/age.py), run after the main model's training.

The DGU predicts an item's average CTR from item-side features only: its input is the main model's candidate
embedding h = item ⊕ category embedding, computed under ``no_grad`` (the main model is read, never updated), and
its own 2-layer MLP is fitted with binary cross-entropy on the training labels — a per-item CTR regressor, since
the BCE minimiser over the samples of one item is that item's click rate. Adam, seeded, shuffled mini-batches.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from tqdm import tqdm

from models.age import DynamicGatingUnit
from models.features import NO_LOOKUPS, Lookups, hash_categories, hash_items
from models.ranker import RankerModel


@torch.no_grad()
def item_embeddings(
    model: RankerModel, items: npt.ArrayLike, cats: npt.ArrayLike, lookups: Lookups = NO_LOOKUPS
) -> torch.Tensor:
    """h [n, d] of raw (item id, category id) pairs: the main model's candidate embedding, detached."""
    cfg = model.config
    item_b = torch.from_numpy(hash_items(np.asarray(items, dtype=np.int64), None, cfg, lookups))
    cat_b = torch.from_numpy(hash_categories(np.asarray(cats, dtype=np.int64), None, cfg, lookups))
    return model.embedding.candidate(item_b, cat_b).detach().clone()


def train_dgu(
    model: RankerModel,
    items: npt.ArrayLike,
    cats: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    hidden: int = 32,
    epochs: int = 2,
    lr: float = 1e-3,
    batch_size: int = 1024,
    seed: int = 0,
    progress: bool = False,
    init: DynamicGatingUnit | None = None,
    lookups: Lookups = NO_LOOKUPS,
) -> DynamicGatingUnit:
    """Fit a DGU on training samples (raw item ids, category ids, 0/1 labels); returned in eval mode.

    ``init`` continues training an existing DGU (the simulator's incremental updates) instead of a fresh one."""
    y = torch.from_numpy(np.asarray(labels, dtype=np.float32).reshape(-1))
    h = item_embeddings(model, items, cats, lookups)
    if h.shape[0] != y.shape[0]:
        raise ValueError(f"items ({h.shape[0]}) and labels ({y.shape[0]}) must have the same length")
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"epochs={epochs}, batch_size={batch_size} must be >= 1 and lr={lr} > 0")
    gen = torch.Generator().manual_seed(seed)
    if init is None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            dgu = DynamicGatingUnit(h.shape[1], hidden)
    else:
        dgu = init
    optimizer = torch.optim.Adam(dgu.parameters(), lr=lr)
    bce = nn.BCEWithLogitsLoss()
    dgu.train()
    n = len(y)
    for _ in tqdm(range(epochs), desc="dgu", unit="epoch", disable=not progress, leave=False):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            loss = bce(dgu(h[rows]), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return dgu.eval()
