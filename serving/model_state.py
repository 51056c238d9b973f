"""The model being served: an artifact loaded, verified, given its GSU and warmed up, behind one reference that a
reload swaps atomically. A request takes the reference once at its start, so it finishes on the model it began with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.artifacts import Artifact, load
from models.config import ModelConfig
from models.features import RetrievedLike, Searcher
from models.ranker import score
from retrieval.events import BEHAVIOR_DTYPE, empty_behaviors
from retrieval.gsu import HardSearch
from retrieval.gsu_hybrid import build_gsu
from retrieval.store.sequence import history_from_sequence


@dataclass(frozen=True)
class LoadedModel:
    artifact: Artifact
    path: Path
    gsu: Searcher | None
    loaded_at: float

    @property
    def config(self) -> ModelConfig:
        return self.artifact.config

    @property
    def version(self) -> str:
        return self.artifact.version

    @property
    def reads_full_history(self) -> bool:
        """Statistics, soft and hybrid search read every behaviour; hard search alone needs only the candidates'
        category lists."""
        cfg = self.config
        return cfg.stats or cfg.gsu in ("soft", "hybrid") or cfg.full_attention


def load_model(path: str | Path, *, nprobe: int | None = None) -> LoadedModel:
    """Load and verify an artifact (models.artifacts.load), build its GSU, and run a test forward so that a model
    that cannot score is refused here rather than at the first request. Raises ArtifactError or ValueError."""
    artifact = load(path)
    cfg = artifact.config
    if cfg.gsu in ("soft", "hybrid") and artifact.item_index is None:
        raise ValueError(f"{path}: {cfg.gsu}-search model without an item index")
    gsu = build_gsu(cfg.gsu, cfg.long_k, artifact.item_index, nprobe or cfg.nprobe, cfg.item_hits)
    loaded = LoadedModel(artifact, Path(path), gsu, time.time())
    warm_up(loaded)
    return loaded


def warm_up(model: LoadedModel, candidates: int = 64, behaviours: int = 2000) -> None:
    """Test forwards on the path a request takes — an empty history (a new user) and a non-empty one read the way
    the pipeline reads it (recent + the candidates' category lists for hard search, the full sequence for soft
    search), through the GSU — so that a reload's first real search path does not run on a live request; raises if
    the scores are not finite probabilities."""
    rng = np.random.default_rng(0)
    now = int(time.time())
    tables = model.artifact.lookups.items
    known = tables.vocab.known if tables is not None and tables.vocab.n_known else np.arange(10_000)
    items = rng.choice(known, candidates)  # items the model knows (and their look-alikes), as real traffic has
    cats = rng.integers(0, 100, candidates)
    seq = np.zeros(behaviours, dtype=BEHAVIOR_DTYPE)
    seq["ts"] = np.sort(rng.integers(now - 365 * 86_400, now - 60, behaviours))
    seq["item_id"] = rng.choice(np.concatenate([known, items]), behaviours)
    seq["category_id"] = rng.choice(cats, behaviours)
    seq["action"] = rng.integers(0, 4, behaviours)
    cfg = model.config
    for history in (empty_behaviors(), seq):
        read = history_from_sequence(history, recent=cfg.short_len, categories=np.unique(cats).tolist(),
                                     per_category=cfg.long_k, full=True)  # fmt: skip
        seen = read.full if model.reads_full_history else read.recent
        retrieved: RetrievedLike | None = None
        if isinstance(model.gsu, HardSearch):
            retrieved = model.gsu.search_lists(read.by_category, items, cats)
        elif model.gsu is not None:
            retrieved = model.gsu.search(history, items, cats)
        pctr = score(model.artifact.model, seen if seen is not None else history, items, cats, now, model.gsu,
                     lookups=model.artifact.lookups, retrieved=retrieved, user_id="warm-up")  # fmt: skip
        if pctr.shape != (candidates,) or not np.all(np.isfinite(pctr)) or pctr.min() < 0 or pctr.max() > 1:
            raise ValueError(f"{model.path}: test forward gave invalid scores (shape {pctr.shape})")
