"""What the training data says about each item, indexed by vocabulary row: the tables that target-aware history
statistics and the soft search read, fitted once from the behaviours visible to training and saved with a model.

- ``vocab``: the exact item vocabulary (retrieval.vocabulary; unseen ids share hashed overflow rows).
- ``count`` / ``strong``: how often each item occurs in all users' histories, and with a strong action — the
  item's global popularity and its global strong-action rate (a smoothed rate is what the statistics use).
- ``neighbours`` / ``weights``: each item's top-M co-occurrence neighbours (positive PMI of two items within
  ``window`` behaviours of each other in one user's sequence): the item graph (retrieval.item_graph).
- ``vectors``: unit item vectors from a truncated SVD of that PMI matrix (rows of items never seen are zero),
  the soft search's relevance space: two items are close when they occur in the same contexts.

Leave-one-out: when a training sample's target is itself one of the behaviours counted here (MovieLens: every
rating is a sample and a behaviour), its own contribution must be taken out of the target's global counts, or the
label leaks through them (``history_stats(..., exclude_action=...)``).

On disk (``save`` / ``load``, no pickle): ``item_vocab.npy`` and ``item_tables.npz`` holding the arrays above plus
``meta`` = [strong_action, window, overflow].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from retrieval.vocabulary import Vocabulary, VocabularyError

VOCAB_FILE = "item_vocab.npy"
TABLES_FILE = "item_tables.npz"
ARRAYS = ("count", "strong", "neighbours", "weights", "vectors")


class ItemTablesError(ValueError):
    """Item tables that cannot be loaded or do not fit their vocabulary; the message names the file and rule."""


@dataclass(frozen=True)
class ItemTables:
    vocab: Vocabulary
    count: npt.NDArray[np.float32]  # [rows]
    strong: npt.NDArray[np.float32]  # [rows]
    neighbours: npt.NDArray[np.int32]  # [rows, M] neighbour rows (0 = none)
    weights: npt.NDArray[np.float32]  # [rows, M] PMI of each neighbour (0 = none)
    vectors: npt.NDArray[np.float32]  # [rows, d] unit vectors (0 = unknown)
    strong_action: int
    window: int

    def __post_init__(self) -> None:
        rows = self.vocab.size
        for name in ARRAYS:
            value = getattr(self, name)
            if value.shape[0] != rows:
                raise ItemTablesError(f"{name} has {value.shape[0]} rows; the vocabulary has {rows}")
        if self.neighbours.shape != self.weights.shape:
            raise ItemTablesError(f"neighbours {self.neighbours.shape} and weights {self.weights.shape} differ")
        if self.neighbours.size and (self.neighbours.min() < 0 or self.neighbours.max() >= rows):
            raise ItemTablesError(f"neighbours must be rows in [0, {rows})")

    @property
    def mean_rate(self) -> float:
        """The global strong-action rate over every counted behaviour (the prior of the smoothed item rate)."""
        total = float(self.count.sum())
        return float(self.strong.sum()) / total if total > 0 else 0.0

    def save(self, directory: str | Path) -> list[Path]:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        vocab_path = self.vocab.save(out / VOCAB_FILE)
        arrays: dict[str, Any] = {name: getattr(self, name) for name in ARRAYS}
        arrays["meta"] = np.array([self.strong_action, self.window, self.vocab.overflow], dtype=np.int64)
        tables_path = out / TABLES_FILE
        with tables_path.open("wb") as handle:
            np.savez(handle, **arrays)
        return [vocab_path, tables_path]

    @classmethod
    def load(cls, directory: str | Path) -> ItemTables:
        base = Path(directory)
        path = base / TABLES_FILE
        if not path.is_file():
            raise ItemTablesError(f"{path}: missing file of the item tables")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in (*ARRAYS, "meta")}
        except (ValueError, OSError, EOFError, KeyError) as exc:
            raise ItemTablesError(f"{path}: unreadable item tables ({exc})") from exc
        strong_action, window, overflow = (int(v) for v in arrays.pop("meta"))
        try:
            vocab = Vocabulary.load(base / VOCAB_FILE, overflow)
            return cls(vocab, **arrays, strong_action=strong_action, window=window)
        except (VocabularyError, ItemTablesError, TypeError) as exc:
            raise ItemTablesError(f"{base}: {exc}") from exc
