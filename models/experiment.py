"""`longrank experiment`: every variant × several seeds on one dataset and one split, summarised in one table.

For each seed, every variant is trained (models.train) on the same samples and evaluated on the same test split;
the table holds the mean and standard deviation over seeds of test AUC and GAUC, the mean logloss and the mean
wall time of a run. Beside the neural variants stand the strong simple baselines (models.baselines: logistic
regression and gradient-boosted trees on target-aware history statistics), the bar a long-history model must
clear. On synthetic data it also holds the oracle AUC (the ground-truth ``p_true`` on the test samples), the
reachable ceiling where the generator writes one (``p_clean``, the noise-free truth: item-interest data) and, per
variant, the share of the AUC gap between ``din`` (short history only) and each that the variant closes:
(auc − auc_din) / (ceiling − auc_din). And the GSU recall of every search (models.gsu_recall).

Two synthetic generators (``interest``): ``categories`` (models/data/synthetic.py: long-term interest shown by
categories, hard search's home ground) and ``items`` (models/data/synthetic_items.py: re-engaged items and their
taste neighbours far back, categories weakly tied to taste).

Runs are spread over ``workers`` processes started with "spawn" (never fork after torch/Faiss are loaded), one
torch thread each, so two cores run two trainings at once. Each worker loads the samples once and keeps the
split features it built (they depend on the feature settings, not on the seed), so seeds share that work.
"""

from __future__ import annotations

import math
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.config import VARIANTS

DATASETS = ("ml100k", "synthetic")
INTERESTS = ("categories", "items")
DEFAULT_CACHE = Path("var") / "datasets"
SCALES = {"categories": (2_000, 2_000, 10_000), "items": (1_000, 3_000, 8_000)}  # users, min length, length


@dataclass(frozen=True)
class ExperimentSpec:
    dataset: str
    seeds: int = 3
    data_dir: Path | None = None
    models: tuple[str, ...] = VARIANTS
    interest: str = "categories"  # synthetic: which generator
    users: int | None = None  # synthetic scale; None: SCALES[interest]
    min_length: int | None = None
    length: int | None = None
    baselines: bool = True
    workers: int = 2
    cache_dir: Path = DEFAULT_CACHE
    train: dict[str, Any] = field(default_factory=dict)  # TrainOptions fields (epochs, lr, max_len, overrides...)
    din_long_max_len: int | None = None  # din_long only: cap its "whole" history (cost grows as C·L)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {self.seeds}")
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        unknown = [m for m in self.models if m not in VARIANTS]
        if unknown or not self.models:
            raise ValueError(f"--models {list(self.models)}: each must be one of {', '.join(VARIANTS)}")
        if self.interest not in INTERESTS:
            raise ValueError(f"--interest must be one of {INTERESTS}, got {self.interest!r}")
        users, low, high = self.scale
        if users < 1 or low < 1 or high < low:
            raise ValueError(f"--users {users} must be >= 1 and 1 <= --min-length {low} <= --length {high}")

    @property
    def scale(self) -> tuple[int, int, int]:
        users, low, high = SCALES[self.interest]
        return (self.users or users, self.min_length or low, self.length or high)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def ensure_dataset(spec: ExperimentSpec) -> Path:
    """The dataset directory: --data as given, else built once under the cache directory and reused."""
    if spec.data_dir is not None:
        return spec.data_dir
    users, low, high = spec.scale
    if spec.dataset == "ml100k":
        out = spec.cache_dir / "ml100k"
    else:
        kind = "synthetic" if spec.interest == "categories" else "synthetic-items"
        out = spec.cache_dir / f"{kind}-u{users}-l{low}-{high}-s0"
    if (out / "meta.json").is_file():
        return out
    _say(f"building dataset {out}")
    if spec.dataset == "ml100k":
        from models.data.movielens import write_ml100k

        write_ml100k(out)
    elif spec.interest == "categories":
        from models.data.synthetic import SyntheticConfig, write_synthetic

        write_synthetic(out, SyntheticConfig(users=users, length=high, min_length=low, seed=0), progress=spec.progress)
    else:
        from models.data.synthetic_items import ItemInterestConfig, write_item_interest

        cfg = ItemInterestConfig(users=users, length=high, min_length=low, seed=0)
        write_item_interest(out, cfg, progress=spec.progress)
    return out


# -- worker side ------------------------------------------------------------------------------------------------

_STATE: dict[str, Any] = {}


def _init_worker(data_dir: str) -> None:
    from models.data.samples import load_samples
    from models.runtime import set_threads

    set_threads(1)
    _STATE["samples"] = load_samples(data_dir)
    _STATE["features"] = {}


def _feature_source(max_len: int | None) -> Callable[..., Any]:
    from models.batches import FeatureCache

    caches: dict[str, FeatureCache] = _STATE["features"]
    samples = _STATE["samples"]

    def source(key: str, split: Any, config: Any, gsu: Any, lookups: Any) -> FeatureCache:
        if key not in caches:
            caches[key] = FeatureCache(samples, split, config, gsu, max_len, lookups, progress=False)
        return caches[key]

    return source


def _run_one(model: str, seed: int, train_options: dict[str, Any]) -> dict[str, Any]:
    from models.train import TrainOptions, train

    samples = _STATE["samples"]
    options = TrainOptions(model=model, seed=seed, threads=1, progress=False, **train_options)
    result = train(samples, options, _feature_source(options.max_len))
    return {
        "model": model,
        "seed": seed,
        "test": result.test,
        "valid": result.valid,
        "best_epoch": result.best_epoch,
        "seconds": result.seconds,
    }


# -- driver -----------------------------------------------------------------------------------------------------


def _mean(values: Sequence[float]) -> float | None:
    clean = [v for v in values if not math.isnan(v)]
    return round(statistics.fmean(clean), 6) if clean else None


def _std(values: Sequence[float]) -> float | None:
    clean = [v for v in values if not math.isnan(v)]
    return round(statistics.stdev(clean), 6) if len(clean) > 1 else (0.0 if clean else None)


def summarise(runs: Sequence[dict[str, Any]], models: Sequence[str]) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for model in models:
        mine = sorted((r for r in runs if r["model"] == model), key=lambda r: r["seed"])
        auc = [r["test"]["auc"] for r in mine]
        gauc = [r["test"]["gauc"] for r in mine]
        table[model] = {
            "auc_mean": _mean(auc),
            "auc_std": _std(auc),
            "gauc_mean": _mean(gauc),
            "gauc_std": _std(gauc),
            "logloss_mean": _mean([r["test"]["logloss"] for r in mine]),
            "seconds_mean": _mean([r["seconds"] for r in mine]),
            "best_epochs": [r["best_epoch"] for r in mine],
            "seeds": [r["seed"] for r in mine],
        }
    return table


def learnable_oracle_auc(samples: Any) -> float | None:
    """AUC on the test samples of the ground truth without its per-item quality term.

    The synthetic p_true adds ``quality(item)``, a pseudo-random hash per item, to the interest terms. Items are
    many (about 100 per user) and each appears in a handful of samples, so no model can learn most items' quality;
    this AUC is the ceiling of a model that knows the user's interests perfectly and nothing item-specific."""
    from models.data.synthetic import item_quality
    from models.metrics import auc

    if samples.test.p_true is None or not len(samples.test):
        return None
    seed = int(samples.meta.get("config", {}).get("seed", 0))
    p = np.clip(samples.test.p_true.astype(np.float64), 1e-12, 1 - 1e-12)
    logit = np.log(p / (1 - p)) - item_quality(samples.test.item, seed)
    value = auc(samples.test.label, logit)
    return None if math.isnan(value) else round(value, 6)


def gap_closed(table: dict[str, dict[str, Any]], ceiling: float) -> dict[str, float | None] | None:
    """(auc − auc_din) / (ceiling − auc_din) per variant; None without a din row."""
    din = table.get("din", {}).get("auc_mean")
    if din is None or ceiling <= din:
        return None
    return {m: None if row["auc_mean"] is None else round((row["auc_mean"] - din) / (ceiling - din), 4)
            for m, row in table.items()}  # fmt: skip


def margin_over_baselines(table: dict[str, dict[str, Any]], baselines: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Test AUC of each variant minus that of the best strong simple baseline (``lr`` or ``gbdt``)."""
    bars = {name: row["auc_mean"] for name, row in baselines.items() if name in ("lr", "gbdt") and row["auc_mean"]}
    if not bars:
        return {}
    best = max(bars, key=lambda name: bars[name])
    return {"baseline": best, "auc": bars[best],
            "by_model": {m: None if r["auc_mean"] is None else round(r["auc_mean"] - bars[best], 4)
                         for m, r in table.items()}}  # fmt: skip


def _baselines(spec: ExperimentSpec, samples: Any, seeds: list[int]) -> dict[str, list[dict[str, Any]]]:
    """The strong simple baselines on the same splits, with the item tables the neural models use."""
    from models.baselines import run_baselines
    from models.train import TrainOptions, base_config, fit_lookups

    config = base_config(samples, TrainOptions(model="sim_hybrid", **spec.train))
    lookups, _ = fit_lookups(samples, config)
    assert lookups.items is not None
    if spec.progress:
        _say("baselines: logistic regression and gradient-boosted trees on history statistics")
    return run_baselines(samples, config.stats_spec, lookups.items, seeds, progress=spec.progress)


def recall_by_search(samples: Any, data_dir: Path, train: dict[str, Any] | None = None) -> dict[str, Any]:
    """GSU recall (models.gsu_recall) of the hard, soft and hybrid searches on the test split, with the item tables
    and index a training run on these samples would fit (``train``: TrainOptions fields). Shared by ``experiment``
    and ``bench gsu --data``."""
    from models.gsu_recall import gsu_recall, read_truth_neighbours
    from models.train import TrainOptions, base_config, fit_lookups
    from retrieval.gsu_hybrid import build_gsu

    config = base_config(samples, TrainOptions(model="sim_hybrid", **(train or {})))
    _, index = fit_lookups(samples, config)
    searches = {kind: build_gsu(kind, config.long_k, index, config.nprobe, config.item_hits)
                for kind in ("hard", "soft", "hybrid")}  # fmt: skip
    return gsu_recall(samples, {k: v for k, v in searches.items() if v is not None}, read_truth_neighbours(data_dir))


def _train_options(spec: ExperimentSpec, model: str) -> dict[str, Any]:
    options = dict(spec.train)
    if model == "din_long" and spec.din_long_max_len is not None and options.get("max_len") is None:
        options["max_len"] = spec.din_long_max_len
    return options


def run_experiment(spec: ExperimentSpec) -> dict[str, Any]:
    from models.data.samples import load_samples
    from models.metrics import auc
    from models.train import TrainOptions

    TrainOptions(model=spec.models[0], **spec.train)  # validate the training options before any work
    data_dir = ensure_dataset(spec)
    samples = load_samples(data_dir)
    dataset = {**samples.describe(), "dir": str(data_dir), "interest": samples.meta.get("interest", "categories")}
    oracle = learnable = ceiling = None
    if samples.test.p_true is not None:  # synthetic: the ground truth's AUC on the test samples
        value = auc(samples.test.label, samples.test.p_true)
        oracle = None if math.isnan(value) else round(value, 6)
        if samples.test.p_clean is not None:
            clean = auc(samples.test.label, samples.test.p_clean)
            ceiling = None if math.isnan(clean) else round(clean, 6)
        elif dataset["interest"] == "categories":
            learnable = learnable_oracle_auc(samples)
    seeds = list(range(spec.seeds))
    baseline_runs = _baselines(spec, samples, seeds) if spec.baselines else {}
    recall = recall_by_search(samples, data_dir, spec.train)
    del samples
    jobs = [(model, seed) for seed in range(spec.seeds) for model in spec.models]
    runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    workers = min(spec.workers, len(jobs))
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(str(data_dir),)) as pool:
        futures = {
            pool.submit(_run_one, model, seed, _train_options(spec, model)): (model, seed) for model, seed in jobs
        }
        for done, future in enumerate(as_completed(futures), start=1):
            run = future.result()
            runs.append(run)
            if spec.progress:
                t = run["test"]
                _say(
                    f"[{done}/{len(jobs)}] {run['model']} seed {run['seed']}: test AUC {t['auc']:.4f} "
                    f"GAUC {t['gauc']:.4f} logloss {t['logloss']:.4f} ({run['seconds']:.0f} s, "
                    f"best epoch {run['best_epoch']})"
                )
    table = summarise(runs, spec.models)
    baselines = summarise([r for rows in baseline_runs.values() for r in rows], list(baseline_runs))
    out: dict[str, Any] = {"models": table, "baselines": baselines, "oracle_auc": oracle, "dataset": dataset,
                           "gsu_recall": recall}  # fmt: skip
    if oracle is not None:
        out["gap_closed_vs_din"] = gap_closed(table, oracle)
        if ceiling is not None:
            out["ceiling_auc"] = ceiling
            out["gap_closed_vs_din_to_ceiling"] = gap_closed(table, ceiling)
        if learnable is not None:
            out["oracle_without_item_quality_auc"] = learnable
            out["gap_closed_vs_din_without_item_quality"] = gap_closed(table, learnable)
    out["margin_over_best_baseline"] = margin_over_baselines(table, baselines)
    out["settings"] = {
        "seeds": spec.seeds,
        "interest": spec.interest,
        "workers": workers,
        "train": spec.train,
        "din_long_max_len": spec.din_long_max_len,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    return out


def format_table(result: dict[str, Any]) -> str:
    """The readable form of the result (without --json)."""

    def cell(mean: float | None, std: float | None) -> str:
        return "n/a" if mean is None else f"{mean:.4f} ± {std or 0:.4f}"

    lines = [f"{'model':<12} {'AUC':>16} {'GAUC':>16} {'logloss':>8} {'s/run':>7}"]
    rows = [*result["models"].items(), *((f"[{n}]", r) for n, r in result.get("baselines", {}).items())]
    for name, row in rows:
        lines.append(
            f"{name:<12} {cell(row['auc_mean'], row['auc_std']):>16} {cell(row['gauc_mean'], row['gauc_std']):>16} "
            f"{row['logloss_mean'] or float('nan'):>8.4f} {row['seconds_mean'] or float('nan'):>7.1f}"
        )
    lines.append("[lr], [gbdt]: strong simple baselines on target-aware history statistics; [gbdt_all]: + the "
                 "item graph's and item vectors' statistics")
    if result.get("oracle_auc") is not None:
        lines.append(f"oracle AUC (p_true on test): {result['oracle_auc']:.4f}")
    if result.get("ceiling_auc") is not None:
        lines.append(f"reachable ceiling AUC (noise-free p_clean on test): {result['ceiling_auc']:.4f}")
    if result.get("oracle_without_item_quality_auc") is not None:
        lines.append(f"oracle AUC without the per-item quality term: {result['oracle_without_item_quality_auc']:.4f}")
    gaps = result.get("gap_closed_vs_din_to_ceiling") or result.get("gap_closed_vs_din") or {}
    target = "ceiling" if result.get("gap_closed_vs_din_to_ceiling") else "oracle"
    for name, share in gaps.items():
        if share is not None and name != "din":
            lines.append(f"  {name}: closes {100 * share:.1f}% of the din→{target} AUC gap")
    margin = result.get("margin_over_best_baseline") or {}
    if margin:
        lines.append(f"margin over the best baseline ({margin['baseline']}, AUC {margin['auc']:.4f}): "
                     + ", ".join(f"{m} {v:+.4f}" for m, v in margin["by_model"].items() if v is not None))
    for name, rec in (result.get("gsu_recall") or {}).items():
        lines.append(f"GSU {name}: target item recall {rec['target_recall']} ({rec['target_samples']} samples), "
                     f"evidence recall {rec['evidence_recall']} ({rec['evidence_samples']} samples)")
    ds = result["dataset"]
    lines.append(
        f"dataset {ds['source']} ({ds['dir']}): {ds['users']} users, {ds['behaviors']} behaviours, "
        f"train/valid/test {ds['train_samples']}/{ds['valid_samples']}/{ds['test_samples']}"
    )
    return "\n".join(lines)
