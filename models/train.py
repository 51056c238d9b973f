"""Training and evaluation of one model variant on a dataset (``longrank train``).

The loop (the model never trains itself; this module owns the optimiser and the losses):

- Adam (lr 1e-3 by default) with an exponential learning-rate decay per epoch (SIM's setting); the large hashed
  id tables train with SparseAdam (lazy Adam: only the rows a batch touches move), and CAN's induction tables at
  ``coaction_lr_scale`` × lr (at the full rate they overfit ML-100K after one epoch: measured valid AUC
  0.789 → 0.783 → 0.768 → 0.745; at 0.03× it rises for three epochs);
- loss = BCE-with-logits on the click label;
- after each epoch the validation AUC / GAUC / logloss; early stopping on the validation AUC (``patience``
  epochs without improvement) and the best epoch's weights restored;
- then the test metrics with the best weights.

Long-history variants (``config.vocabulary``) first fit the item tables on the behaviours visible to training
(``Samples.visible_histories``: never validation or test events): the exact item vocabulary, global counts, the
co-occurrence item graph and item vectors (retrieval.item_graph), and the category vocabulary; the embedding tables
are sized to them (the collision rate is printed and saved in metrics.json), the item embeddings start from the
item vectors, and the soft / hybrid search probes an ``ItemIndex`` over those vectors — the very search serving
runs. The statistics branch is standardised with the training split's statistics before the first step.

Determinism: one seed drives torch (``torch.manual_seed``: initialisation and dropout), a numpy ``Generator``
(shuffling) and Faiss k-means; ``torch.use_deterministic_algorithms(True, warn_only=True)``; the thread count is
set explicitly. Two runs with the same seed, data and thread count give the same metrics.
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from tqdm import tqdm

from models.batches import FeatureCache, build_rows
from models.config import VARIANTS, ModelConfig
from models.data.samples import Samples, Split
from models.features import NO_LOOKUPS, Batch, Lookups, Searcher
from models.metrics import evaluate
from models.ranker import RankerModel
from models.runtime import set_threads
from retrieval.gsu_hybrid import build_gsu
from retrieval.item_graph import fit_item_tables
from retrieval.item_index import ItemIndex
from retrieval.vocabulary import Vocabulary

CURVES_FILE = "curves.png"


@dataclass(frozen=True)
class TrainOptions:
    """One training run. ``overrides`` are ModelConfig fields (architecture); the rest is the run itself."""

    model: str = "sim_can"
    epochs: int = 4
    lr: float = 1e-3
    lr_decay: float = 0.8  # multiplied into the learning rate after every epoch
    batch_size: int = 256
    eval_batch_size: int = 2048
    seed: int = 0
    max_len: int | None = None  # keep only each history's last max_len behaviours (None: all)
    threads: int = 1  # small models: a second OpenMP thread buys little and collapses when a core is busy
    patience: int = 1
    weight_decay: float = 0.0
    coaction_lr_scale: float = 0.03  # CAN induction tables: lr × this (at 1.0 they overfit ML-100K after 1 epoch)
    item_lr_scale: float = 1.0  # item embeddings: lr × this (0: frozen)
    overrides: dict[str, Any] = field(default_factory=dict)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.model not in VARIANTS:
            raise ValueError(f"--model {self.model!r} is unknown; expected one of: {', '.join(VARIANTS)}")
        checks: dict[str, tuple[float, float]] = {
            "epochs": (self.epochs, 1),
            "batch_size": (self.batch_size, 1),
            "eval_batch_size": (self.eval_batch_size, 1),
            "threads": (self.threads, 1),
            "patience": (self.patience, 1),
        }
        for name, (value, low) in checks.items():
            if value < low:
                raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
        if self.max_len is not None and self.max_len < 1:
            raise ValueError(f"--max-len must be >= 1, got {self.max_len}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        if not self.coaction_lr_scale > 0:
            raise ValueError(f"coaction_lr_scale must be > 0, got {self.coaction_lr_scale}")
        if not self.item_lr_scale >= 0:
            raise ValueError(f"item_lr_scale must be >= 0, got {self.item_lr_scale}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"--lr-decay must be in (0, 1], got {self.lr_decay}")
        if self.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {self.seed}")


@dataclass
class TrainResult:
    model: RankerModel
    config: ModelConfig
    history: list[dict[str, float]]  # one entry per epoch: train_loss, valid_auc, valid_gauc, valid_logloss, ...
    best_epoch: int  # 1-based
    valid: dict[str, float]
    test: dict[str, float]
    seconds: float
    item_index: ItemIndex | None = None
    test_probs: npt.NDArray[np.float32] | None = None
    lookups: Lookups = NO_LOOKUPS
    vocabulary: dict[str, Any] = field(default_factory=dict)  # sizes and collision rates of the id maps

    def metrics(self, options: TrainOptions, dataset: dict[str, Any] | None = None) -> dict[str, Any]:
        """metrics.json: test and validation metrics, the curves, and the training facts."""
        opts = asdict(options)
        opts.pop("progress")
        return {
            "variant": self.config.variant,
            "test": self.test,
            "valid": self.valid,
            "best_epoch": self.best_epoch,
            "epochs_run": len(self.history),
            "history": self.history,
            "seconds": round(self.seconds, 3),
            "training": opts,
            "dataset": dataset or {},
            "vocabulary": self.vocabulary,
        }


FeatureSource = Callable[[str, Split, ModelConfig, Searcher | None, Lookups], FeatureCache]
"""How the loop gets a split's cached features: (cache key, split, config, gsu) -> FeatureCache. The experiment
runner passes a memoising one so seeds and variants with equal feature settings share the work."""


def feature_key(config: ModelConfig, max_len: int | None) -> str:
    """The settings a split's cached features depend on (the model's weights do not matter to them)."""
    return (f"S={config.short_len},K={config.long_k},gsu={config.gsu},hits={config.item_hits},max_len={max_len},"
            f"A={config.action_buckets},stats={config.stats}/{config.stats_windows}/{config.strong_action},"
            f"vocab={config.vocabulary}/{config.vector_dim},nprobe={config.nprobe},"
            f"users={config.user_buckets if config.user_dim else 0}")  # fmt: skip


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return np.random.default_rng(seed)


DATASET_DEFAULTS: dict[str, dict[str, Any]] = {"ml100k": {"item_buckets": 2**15, "strong_action": 4},
                                               "synthetic": {}}  # fmt: skip
"""ModelConfig settings per dataset (MovieLens: the demo's 2^15 hashed buckets for the short-history variants,
a rating of 4 or more as the strong action). A dataset's meta.json may also name its ``strong_action``."""


def base_config(samples: Samples, options: TrainOptions) -> ModelConfig:
    """The variant's defaults, the dataset's settings, then the caller's overrides (sizes not yet fitted)."""
    values: dict[str, Any] = {"extra": {"dataset": samples.source}, **DATASET_DEFAULTS.get(samples.source, {})}
    if "strong_action" in samples.meta:
        values["strong_action"] = int(samples.meta["strong_action"])
    values.update(options.overrides)
    return ModelConfig.for_variant(options.model, **values)


_LOOKUPS: dict[tuple[int, int, int], tuple[Lookups, ItemIndex | None]] = {}


def fit_lookups(samples: Samples, config: ModelConfig, seed: int = 0) -> tuple[Lookups, ItemIndex | None]:
    """Item tables, category vocabulary and the item index over the item vectors, fitted on the behaviours visible
    to training. They depend on the data and a few settings, not on the model or the run's seed (``seed`` seeds
    the SVD and k-means, 0 for every run): memoised per samples object."""
    key = (id(samples), config.vector_dim, config.n_clusters)
    if key not in _LOOKUPS:
        visible = samples.visible_histories()
        tables = fit_item_tables(visible, config.strong_action, dim=config.vector_dim, seed=seed)
        cats = np.concatenate([*(h["category_id"] for h in visible), samples.train.category]).astype(np.int64)
        categories = Vocabulary.fit(cats, overflow=16)
        clusters = max(1, min(config.n_clusters, tables.vocab.size - 1, tables.vocab.n_known // 8 or 1))
        index = ItemIndex.build(tables.vectors, n_clusters=clusters, seed=seed, vocab=tables.vocab)
        _LOOKUPS.clear()  # one dataset per process at a time
        _LOOKUPS[key] = (Lookups(tables, categories), index)
    return _LOOKUPS[key]


def build_config(samples: Samples, options: TrainOptions) -> tuple[ModelConfig, Lookups, ItemIndex | None]:
    """The run's config with embedding sizes fitted to the data, its lookups and (soft / hybrid) item index."""
    config = base_config(samples, options)
    if not config.vocabulary:
        return config, NO_LOOKUPS, None
    lookups, index = fit_lookups(samples, config)
    assert lookups.items is not None and lookups.categories is not None and index is not None
    config = config.replace(item_buckets=lookups.items.vocab.size, category_buckets=lookups.categories.size,
                            n_clusters=index.n_clusters, nprobe=min(config.nprobe, index.n_clusters))  # fmt: skip
    return config, lookups, (index if config.gsu in ("soft", "hybrid") else None)


def vocabulary_report(samples: Samples, config: ModelConfig, lookups: Lookups) -> dict[str, Any]:
    """Rows and collision rates of the item and category maps over every id of the data (train, valid, test)."""
    items = np.concatenate([*(h["item_id"] for h in samples.histories), samples.train.item, samples.valid.item,
                            samples.test.item])  # fmt: skip
    cats = np.concatenate([*(h["category_id"] for h in samples.histories), samples.train.category])
    if config.vocabulary:
        assert lookups.items is not None and lookups.categories is not None
        item_map, cat_map = lookups.items.vocab, lookups.categories
    else:
        item_map, cat_map = Vocabulary([], config.item_buckets - 1), Vocabulary([], config.category_buckets - 1)
    return {
        "item_rows": item_map.size, "items_known": item_map.n_known,
        "item_collision_rate": round(item_map.collision_rate(items), 6),
        "category_rows": cat_map.size, "category_collision_rate": round(cat_map.collision_rate(cats), 6),
    }  # fmt: skip


class _Features:
    """Batches of one split: cached features (the GSU and the statistics run once per split), or built per batch."""

    def __init__(
        self,
        samples: Samples,
        config: ModelConfig,
        options: TrainOptions,
        source: FeatureSource | None,
        lookups: Lookups,
        index: ItemIndex | None,
    ) -> None:
        self.samples, self.config, self.options = samples, config, options
        self.source, self.lookups = source, lookups
        self.gsu: Searcher | None = build_gsu(config.gsu, config.long_k, index, config.nprobe, config.item_hits)
        self.caches: dict[str, FeatureCache] = {}

    def _cache(self, name: str, split: Split) -> FeatureCache:
        if name not in self.caches:
            if self.source is None:
                self.caches[name] = FeatureCache(
                    self.samples, split, self.config, self.gsu, self.options.max_len, self.lookups,
                    desc=f"{name} features", progress=self.options.progress,
                )  # fmt: skip
            else:
                key = f"{name}:{feature_key(self.config, self.options.max_len)}"
                self.caches[name] = self.source(key, split, self.config, self.gsu, self.lookups)
        return self.caches[name]

    def stats(self, name: str, split: Split) -> torch.Tensor | None:
        """The cached statistics of a split (None without a statistics branch)."""
        if not self.config.stats:
            return None
        if self.config.full_attention:
            rows = np.arange(len(split))
            built = build_rows(self.samples, split, rows, self.config, None, self.options.max_len, self.lookups)
            return built.cand_stats
        return self._cache(name, split).tensors.get("cand_stats")

    def batches(self, name: str, split: Split, order: npt.NDArray[np.intp], size: int) -> Iterator[Batch]:
        cache = None if self.config.full_attention else self._cache(name, split)
        for start in range(0, len(order), size):
            rows = order[start : start + size]
            if cache is not None:
                yield cache.batch(rows)
            else:
                yield build_rows(self.samples, split, rows, self.config, self.gsu, self.options.max_len, self.lookups)


SPARSE_MIN_ROWS = 1024


def make_optimizers(model: RankerModel, options: TrainOptions) -> list[torch.optim.Optimizer]:
    """Adam for the dense parameters; SparseAdam (lazy Adam) for the large id tables.

    The large id tables (item rows, and CAN's induction table of item rows × D' = 160) are switched to sparse
    gradients for training: a batch touches a few hundred rows, and dense Adam would update every one of millions
    of parameters per step (measured on ML-100K with 2^17 buckets: 70 ms of a step's time). ``sparse`` only
    changes how the gradient is represented; the saved weights and serving are unaffected. CAN's induction tables
    learn at ``coaction_lr_scale`` × lr, the item embeddings at ``item_lr_scale`` × lr (0: frozen at their start,
    the item vectors)."""
    induction = {id(p) for p in model.coaction.parameters()} if model.coaction is not None else set()
    item = model.embedding.item.weight
    if options.item_lr_scale == 0:
        item.requires_grad_(False)

    def scale(param: torch.Tensor) -> float:
        if param is item:
            return options.item_lr_scale
        return options.coaction_lr_scale if id(param) in induction else 1.0

    for module in model.modules():
        if isinstance(module, nn.Embedding) and module.num_embeddings >= SPARSE_MIN_ROWS:
            module.sparse = True
    sparse_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding) and m.sparse}
    groups: dict[tuple[bool, float], list[torch.Tensor]] = {}
    for param in model.parameters():
        if param.requires_grad:
            groups.setdefault((id(param) in sparse_ids, scale(param)), []).append(param)
    dense = [{"params": ps, "lr": options.lr * f} for (sparse, f), ps in groups.items() if not sparse]
    sparse = [{"params": ps, "lr": options.lr * f} for (sparse, f), ps in groups.items() if sparse]
    optimizers: list[torch.optim.Optimizer] = [
        torch.optim.Adam(dense, lr=options.lr, weight_decay=options.weight_decay)
    ]
    if sparse:
        optimizers.append(torch.optim.SparseAdam(sparse, lr=options.lr))
    return optimizers


def predict(model: RankerModel, features: _Features, name: str, split: Split, size: int) -> npt.NDArray[np.float32]:
    """pCTR of every sample of a split, in split order (model switched to eval mode)."""
    model.eval()
    out: list[npt.NDArray[np.float32]] = []
    with torch.inference_mode():
        for batch in features.batches(name, split, np.arange(len(split)), size):
            out.append(torch.sigmoid(model(batch).logits).numpy().astype(np.float32))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def train(samples: Samples, options: TrainOptions, source: FeatureSource | None = None) -> TrainResult:
    """Train ``options.model`` on ``samples.train``, early-stop on ``samples.valid``, evaluate on ``samples.test``."""
    started = time.perf_counter()
    set_threads(options.threads)
    rng = seed_everything(options.seed)
    config, lookups, index = build_config(samples, options)
    vocabulary = vocabulary_report(samples, config, lookups)
    if options.progress:
        tqdm.write(f"{config.variant}: {vocabulary['item_rows']} item rows ({vocabulary['items_known']} known), item "
                   f"collision rate {vocabulary['item_collision_rate']:.2%}; {vocabulary['category_rows']} category "
                   f"rows, collision rate {vocabulary['category_collision_rate']:.2%}")  # fmt: skip
    model = RankerModel(config)
    if config.vocabulary and config.init_from_vectors:
        assert lookups.items is not None
        model.embedding.init_items(lookups.items.vectors)
    features = _Features(samples, config, options, source, lookups, index)
    train_split, valid_split = samples.train, samples.valid
    if model.stats is not None:
        stats = features.stats("train", train_split)
        assert stats is not None
        model.stats.fit(stats)
    optimizers = make_optimizers(model, options)
    schedulers = [torch.optim.lr_scheduler.ExponentialLR(o, gamma=options.lr_decay) for o in optimizers]
    bce = nn.BCEWithLogitsLoss()
    labels = torch.from_numpy(train_split.label.astype(np.float32))
    history: list[dict[str, float]] = []
    best_auc, best_epoch, best_state = -math.inf, 0, copy.deepcopy(model.state_dict())

    for epoch in range(1, options.epochs + 1):
        model.train()
        order = rng.permutation(len(train_split))
        total, seen = 0.0, 0
        bar = tqdm(
            total=len(order), desc=f"{config.variant} epoch {epoch}/{options.epochs}", unit="sample",
            disable=not options.progress, leave=False,
        )  # fmt: skip
        for start, batch in zip(
            range(0, len(order), options.batch_size),
            features.batches("train", train_split, order, options.batch_size),
            strict=True,
        ):
            target = labels[torch.from_numpy(order[start : start + options.batch_size])]
            loss = bce(model(batch).logits, target)
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for optimizer in optimizers:
                optimizer.step()
            total += float(loss.detach()) * len(target)
            seen += len(target)
            bar.update(len(target))
            bar.set_postfix(loss=f"{total / seen:.4f}", refresh=False)
        bar.close()
        for scheduler in schedulers:
            scheduler.step()
        probs = predict(model, features, "valid", valid_split, options.eval_batch_size)
        valid = evaluate(valid_split.user, valid_split.label, probs)
        row = {"epoch": float(epoch), "train_loss": total / max(1, seen), "lr": optimizers[0].param_groups[0]["lr"]}
        row.update({f"valid_{k}": v for k, v in valid.items()})
        history.append(row)
        if options.progress:
            tqdm.write(
                f"{config.variant} epoch {epoch}: train loss {row['train_loss']:.4f}  valid AUC {valid['auc']:.4f}"
                f"  GAUC {valid['gauc']:.4f}  logloss {valid['logloss']:.4f}"
            )
        score = valid["auc"] if not math.isnan(valid["auc"]) else -math.inf
        if score > best_auc or best_epoch == 0:
            best_auc, best_epoch = score, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= options.patience:
            break

    model.load_state_dict(best_state)
    model.eval()
    best_valid = {k.removeprefix("valid_"): v for k, v in history[best_epoch - 1].items() if k.startswith("valid_")}
    test_probs = predict(model, features, "test", samples.test, options.eval_batch_size)
    test = evaluate(samples.test.user, samples.test.label, test_probs)
    return TrainResult(
        model=model,
        config=config,
        history=history,
        best_epoch=best_epoch,
        valid=best_valid,
        test=test,
        seconds=time.perf_counter() - started,
        item_index=index,
        test_probs=test_probs,
        lookups=lookups,
        vocabulary=vocabulary,
    )


def train_to_artifact(data_dir: str | Path, out_dir: str | Path, options: TrainOptions) -> dict[str, Any]:
    """`longrank train`: load the dataset, train, write the artifact (weights, config, metrics.json, curves.png and
    the item index for soft search). Returns metrics.json's content plus the artifact ``version``."""
    from models.artifacts import save
    from models.data.samples import load_samples
    from models.dgu import train_dgu
    from models.plots import plot_curves

    samples = load_samples(data_dir)
    result = train(samples, options)
    # AGE's Dynamic Gating Unit: item-side CTR prior on the trained model's embeddings (read, not updated).
    dgu = train_dgu(result.model, samples.train.item, samples.train.category, samples.train.label, seed=options.seed,
                    progress=options.progress, lookups=result.lookups)
    metrics = result.metrics(options, samples.describe())
    with tempfile.TemporaryDirectory() as tmp:
        title = f"{result.config.variant} on {samples.source}"
        curves = plot_curves(result.history, Path(tmp) / CURVES_FILE, title=title)
        version = save(
            result.model, result.config, out_dir, metrics, result.item_index, {CURVES_FILE: curves}, overwrite=True,
            dgu=dgu, lookups=result.lookups,
        )
    return {**metrics, "version": version}
