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
from models.features import score
from retrieval.events import empty_behaviors
from retrieval.gsu import HardSearch, SoftSearch


@dataclass(frozen=True)
class LoadedModel:
    artifact: Artifact
    path: Path
    gsu: HardSearch | SoftSearch | None
    loaded_at: float

    @property
    def config(self) -> ModelConfig:
        return self.artifact.config

    @property
    def version(self) -> str:
        return self.artifact.version

    @property
    def reads_full_history(self) -> bool:
        """Soft search scores every behaviour; hard search needs only the candidates' category lists."""
        return self.config.gsu == "soft" or self.config.full_attention


def load_model(path: str | Path, *, nprobe: int | None = None) -> LoadedModel:
    """Load and verify an artifact (models.artifacts.load), build its GSU, and run a test forward so that a model
    that cannot score is refused here rather than at the first request. Raises ArtifactError or ValueError."""
    artifact = load(path)
    cfg = artifact.config
    gsu: HardSearch | SoftSearch | None = None
    if cfg.gsu == "hard":
        gsu = HardSearch(cfg.long_k)
    elif cfg.gsu == "soft":
        if artifact.item_index is None:
            raise ValueError(f"{path}: soft-search model without an item index")
        gsu = SoftSearch(artifact.item_index, cfg.long_k, nprobe or min(cfg.nprobe, artifact.item_index.n_clusters))
    loaded = LoadedModel(artifact, Path(path), gsu, time.time())
    warm_up(loaded)
    return loaded


def warm_up(model: LoadedModel, candidates: int = 64) -> None:
    """A test forward on an empty and a small history; raises if the scores are not finite probabilities."""
    rng = np.random.default_rng(0)
    history = empty_behaviors()
    items = rng.integers(0, 10_000, candidates)
    cats = rng.integers(0, 100, candidates)
    pctr = score(model.artifact.model, history, items, cats, int(time.time()), model.config, model.gsu)
    if pctr.shape != (candidates,) or not np.all(np.isfinite(pctr)) or pctr.min() < 0 or pctr.max() > 1:
        raise ValueError(f"{model.path}: test forward gave invalid scores (shape {pctr.shape})")
