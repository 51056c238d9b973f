"""Training and evaluation of one model variant on a dataset (``longrank train``).

The loop (the model never trains itself; this module owns the optimiser and the losses):

- Adam (lr 1e-3 by default) with an exponential learning-rate decay per epoch (SIM's setting); the large hashed
  id tables train with SparseAdam (lazy Adam: only the rows a batch touches move), and CAN's induction tables at
  ``coaction_lr_scale`` × lr (at the full rate they overfit ML-100K after one epoch: measured valid AUC
  0.789 → 0.783 → 0.768 → 0.745; at 0.03× it rises for three epochs);
- loss = BCE-with-logits on the click label, plus ``aux_weight`` (α = 1) × BCE on the soft-search GSU's auxiliary
  logit (SIM: α·L_GSU + β·L_ESU, α = β = 1 with soft search; hard search has no auxiliary loss);
- after each epoch the validation AUC / GAUC / logloss; early stopping on the validation AUC (``patience``
  epochs without improvement) and the best epoch's weights restored;
- then the test metrics with the best weights.

Soft search trains its own retrieval: in the first epoch the ESU reads the hard (category) search's behaviours
and the GSU's auxiliary head learns the relevance r = (W_b e_i)·(W_a e_a) on them; after every epoch the
``ItemIndex`` is rebuilt from the current ``gsu_tables()`` (item ⊕ category vectors per item bucket, each bucket's
category read off the data: ``category_of_buckets``) and later epochs, validation and test read the
``SoftSearch`` top-K — the very search serving runs. The artifact's index is rebuilt from the restored best weights.

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
from models.features import Batch, Searcher
from models.metrics import evaluate
from models.ranker import RankerModel
from models.runtime import set_threads
from retrieval.gsu import HardSearch, SoftSearch
from retrieval.hashing import bucket
from retrieval.item_index import ItemIndex

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
    aux_weight: float = 1.0
    weight_decay: float = 0.0
    coaction_lr_scale: float = 0.03  # CAN induction tables: lr × this (at 1.0 they overfit ML-100K after 1 epoch)
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
        }


FeatureSource = Callable[[str, Split, ModelConfig, Searcher | None], FeatureCache]
"""How the loop gets a split's cached features: (cache key, split, config, gsu) -> FeatureCache. The experiment
runner passes a memoising one so seeds and variants with equal feature settings share the work."""


def feature_key(config: ModelConfig, max_len: int | None, gsu_kind: str) -> str:
    """The settings a split's cached features depend on (the model's weights do not matter to them)."""
    return f"S={config.short_len},K={config.long_k},gsu={gsu_kind},max_len={max_len},A={config.action_buckets}"


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return np.random.default_rng(seed)


DATASET_DEFAULTS: dict[str, dict[str, Any]] = {"ml100k": {"item_buckets": 2**15}, "synthetic": {}}
"""ModelConfig settings tuned per dataset (measured with `longrank experiment`; see the README)."""


def build_config(samples: Samples, options: TrainOptions) -> ModelConfig:
    """The variant's defaults, the dataset's size-dependent settings, then the caller's overrides."""
    values: dict[str, Any] = {"extra": {"dataset": samples.source}, **DATASET_DEFAULTS.get(samples.source, {})}
    values.update(options.overrides)
    config = ModelConfig.for_variant(options.model, **values)
    if config.gsu == "soft":
        clusters = min(config.n_clusters, config.item_buckets - 1)
        config = config.replace(n_clusters=clusters, nprobe=min(config.nprobe, clusters))
    return config


class _Features:
    """Batches of one split for the current retrieval state (hard search, or soft search over an index)."""

    def __init__(
        self,
        samples: Samples,
        config: ModelConfig,
        options: TrainOptions,
        source: FeatureSource | None,
    ) -> None:
        self.samples, self.config, self.options = samples, config, options
        self.source = source
        self.gsu: Searcher | None = HardSearch(config.long_k) if config.gsu != "none" else None
        self.gsu_kind = "hard" if config.gsu != "none" else "none"
        self.version = 0  # bumps when the soft index changes
        self.caches: dict[str, FeatureCache] = {}

    def use_index(self, index: ItemIndex) -> None:
        self.gsu = SoftSearch(index, self.config.long_k, self.config.nprobe)
        self.gsu_kind = "soft"
        self.version += 1
        self.caches.clear()

    def _cache(self, name: str, split: Split) -> FeatureCache:
        if name not in self.caches:
            if self.gsu_kind == "soft" or self.source is None:
                self.caches[name] = FeatureCache(
                    self.samples, split, self.config, self.gsu, self.options.max_len,
                    desc=f"{name} features", progress=self.options.progress,
                )  # fmt: skip
            else:
                key = f"{name}:{feature_key(self.config, self.options.max_len, self.gsu_kind)}"
                self.caches[name] = self.source(key, split, self.config, self.gsu)
        return self.caches[name]

    def batches(self, name: str, split: Split, order: npt.NDArray[np.intp], size: int) -> Iterator[Batch]:
        cache = None if self.config.full_attention else self._cache(name, split)
        for start in range(0, len(order), size):
            rows = order[start : start + size]
            if cache is not None:
                yield cache.batch(rows)
            else:
                yield build_rows(self.samples, split, rows, self.config, self.gsu, self.options.max_len)


SPARSE_MIN_ROWS = 1024


def make_optimizers(model: RankerModel, options: TrainOptions) -> list[torch.optim.Optimizer]:
    """Adam for the dense parameters; SparseAdam (lazy Adam) for the large id tables.

    The hashed item tables (item_buckets rows, and CAN's induction table of item_buckets × D' = 160) are switched
    to sparse gradients for training: a batch touches a few hundred rows, and dense Adam would update every one
    of millions of parameters per step (measured on ML-100K with 2^17 buckets: 70 ms of a step's time).
    ``sparse`` only changes how the gradient is represented; the saved weights and serving are unaffected."""
    induction = {id(p) for p in model.coaction.parameters()} if model.coaction is not None else set()
    sparse: list[torch.Tensor] = []
    sparse_induction: list[torch.Tensor] = []
    for module in model.modules():
        if isinstance(module, nn.Embedding) and module.num_embeddings >= SPARSE_MIN_ROWS:
            module.sparse = True
            (sparse_induction if id(module.weight) in induction else sparse).append(module.weight)
    sparse_ids = {id(p) for p in (*sparse, *sparse_induction)}
    dense = [p for p in model.parameters() if id(p) not in sparse_ids and id(p) not in induction]
    dense_induction = [p for p in model.parameters() if id(p) not in sparse_ids and id(p) in induction]
    scaled = options.lr * options.coaction_lr_scale
    dense_groups: list[dict[str, Any]] = [{"params": dense}]
    if dense_induction:
        dense_groups.append({"params": dense_induction, "lr": scaled})
    optimizers: list[torch.optim.Optimizer] = [
        torch.optim.Adam(dense_groups, lr=options.lr, weight_decay=options.weight_decay)
    ]
    sparse_groups: list[dict[str, Any]] = []
    if sparse:
        sparse_groups.append({"params": sparse})
    if sparse_induction:
        sparse_groups.append({"params": sparse_induction, "lr": scaled})
    if sparse_groups:
        optimizers.append(torch.optim.SparseAdam(sparse_groups, lr=options.lr))
    return optimizers


def predict(model: RankerModel, features: _Features, name: str, split: Split, size: int) -> npt.NDArray[np.float32]:
    """pCTR of every sample of a split, in split order (model switched to eval mode)."""
    model.eval()
    out: list[npt.NDArray[np.float32]] = []
    with torch.inference_mode():
        for batch in features.batches(name, split, np.arange(len(split)), size):
            out.append(torch.sigmoid(model(batch).logits).numpy().astype(np.float32))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def category_of_buckets(samples: Samples, config: ModelConfig) -> npt.NDArray[np.int64]:
    """Each item bucket's category bucket (0 where no item of the data falls), from the histories and samples:
    the soft search's vectors are item ⊕ category embeddings, and the index is addressed by item bucket."""
    out = np.zeros(config.item_buckets, dtype=np.int64)
    parts = [(h["item_id"], h["category_id"]) for h in samples.histories if len(h)]
    parts += [(s.item, s.category) for s in (samples.train, samples.valid, samples.test)]
    for items, cats in parts:
        out[bucket(items, config.item_buckets)] = bucket(cats, config.category_buckets)
    return out


def _refresh_index(
    model: RankerModel, config: ModelConfig, seed: int, category_of_bucket: npt.NDArray[np.int64] | None = None
) -> ItemIndex:
    keys, queries = model.gsu_tables(category_of_bucket)
    return ItemIndex.build(keys, queries, n_clusters=config.n_clusters, seed=seed)


def train(samples: Samples, options: TrainOptions, source: FeatureSource | None = None) -> TrainResult:
    """Train ``options.model`` on ``samples.train``, early-stop on ``samples.valid``, evaluate on ``samples.test``."""
    started = time.perf_counter()
    set_threads(options.threads)
    rng = seed_everything(options.seed)
    config = build_config(samples, options)
    model = RankerModel(config)
    optimizers = make_optimizers(model, options)
    schedulers = [torch.optim.lr_scheduler.ExponentialLR(o, gamma=options.lr_decay) for o in optimizers]
    bce = nn.BCEWithLogitsLoss()
    features = _Features(samples, config, options, source)
    train_split, valid_split = samples.train, samples.valid
    labels = torch.from_numpy(train_split.label.astype(np.float32))
    history: list[dict[str, float]] = []
    best_auc, best_epoch, best_state, best_index = -math.inf, 0, copy.deepcopy(model.state_dict()), None
    soft = config.gsu == "soft"
    cat_of_bucket: npt.NDArray[np.int64] | None = None

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
            out = model(batch)
            loss = bce(out.logits, target)
            if out.aux_logits is not None:
                loss = loss + options.aux_weight * bce(out.aux_logits, target)
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
        index = None
        if soft:
            if cat_of_bucket is None:
                cat_of_bucket = category_of_buckets(samples, config)
            index = _refresh_index(model, config, options.seed, cat_of_bucket)
            features.use_index(index)
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
            best_state, best_index = copy.deepcopy(model.state_dict()), index
        elif epoch - best_epoch >= options.patience:
            break

    model.load_state_dict(best_state)
    model.eval()
    if soft:
        assert best_index is not None  # the index built right after the best epoch, from these very weights
        features.use_index(best_index)
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
        item_index=best_index,
        test_probs=test_probs,
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
                    progress=options.progress)
    metrics = result.metrics(options, samples.describe())
    with tempfile.TemporaryDirectory() as tmp:
        title = f"{result.config.variant} on {samples.source}"
        curves = plot_curves(result.history, Path(tmp) / CURVES_FILE, title=title)
        version = save(
            result.model, result.config, out_dir, metrics, result.item_index, {CURVES_FILE: curves}, overwrite=True,
            dgu=dgu,
        )
    return {**metrics, "version": version}
