"""The strong simple baselines every experiment table carries: scikit-learn models on target-aware history
statistics (retrieval.history_stats), the bar a neural long-history model must clear.

- ``lr``: logistic regression on the standardised statistics (counts of the target item and its category over the
  whole history and recent windows, with strong actions, days since the last interaction with each, the user's
  length and strong rate, the item's global count and strong rate);
- ``gbdt``: scikit-learn's HistGradientBoostingClassifier on the same statistics;
- ``gbdt_all``: the same trees with the statistics of the item tables added (the co-occurrence graph's neighbours
  and the item vectors' similarities: what co-occurrence says beyond counting; reported for transparency, it is
  the neural models' own statistics input without the networks).

Every choice is made on the validation split only: the regularisation C of the regression, the learning rate and
the number of trees of the boosting (grown on train, the best iteration count by validation AUC). The statistics'
item tables are fitted on the behaviours visible to training, as for the neural models. The trees are seeded, so
both are deterministic (no subsampling), so each is fitted once and its one result stands for every seed (standard
deviation 0).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from models.batches import split_stats
from models.data.samples import Samples
from models.metrics import auc, evaluate
from retrieval.history_stats import StatsSpec, stat_names
from retrieval.item_tables import ItemTables

BASELINES = ("lr", "gbdt", "gbdt_all")
LEARNED = ("nb_", "vec_")  # statistics that come from the item graph and vectors, not from counting
LR_C = (0.01, 0.1, 1.0, 10.0)
GBDT_RATES = (0.03, 0.1)
GBDT_MAX_ITER = 400


def _fit_lr(x: dict[str, npt.NDArray[np.float32]], y: dict[str, npt.NDArray[np.uint8]]) -> Any:
    best, best_auc = None, -math.inf
    for c in LR_C:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        model.fit(x["train"], y["train"])
        score = auc(y["valid"], model.predict_proba(x["valid"])[:, 1])
        if score > best_auc:
            best, best_auc = model, score
    return best


def _fit_gbdt(x: dict[str, npt.NDArray[np.float32]], y: dict[str, npt.NDArray[np.uint8]], seed: int) -> Any:
    best, best_auc = None, -math.inf
    for rate in GBDT_RATES:
        model = HistGradientBoostingClassifier(learning_rate=rate, max_iter=GBDT_MAX_ITER, early_stopping=False,
                                               random_state=seed)  # fmt: skip
        model.fit(x["train"], y["train"])
        for iterations, probs in enumerate(model.staged_predict_proba(x["valid"]), start=1):
            if iterations % 20 and iterations != GBDT_MAX_ITER:
                continue
            score = auc(y["valid"], probs[:, 1])
            if score > best_auc:
                best_auc = score
                best = HistGradientBoostingClassifier(learning_rate=rate, max_iter=iterations, early_stopping=False,
                                                      random_state=seed)  # fmt: skip
    assert best is not None
    return best.fit(x["train"], y["train"])


def run_baselines(
    samples: Samples, spec: StatsSpec, tables: ItemTables, seeds: Sequence[int], *, progress: bool = False
) -> dict[str, list[dict[str, Any]]]:
    """Each baseline's test (and chosen validation) metrics per seed: {name: [{"seed", "test", "valid"}, ...]}."""
    names = stat_names(spec, True)
    plain = [i for i, n in enumerate(names) if not n.startswith(LEARNED)]
    splits = {s: samples.split(s) for s in ("train", "valid", "test")}
    full = {s: split_stats(samples, split, spec, tables, progress=progress, desc=f"{s} statistics")
            for s, split in splits.items()}  # fmt: skip
    y = {s: split.label for s, split in splits.items()}
    out: dict[str, list[dict[str, Any]]] = {}
    for name in BASELINES:
        started = time.perf_counter()
        columns = plain if name != "gbdt_all" else list(range(len(names)))
        x = {s: full[s][:, columns] for s in full}
        model = _fit_lr(x, y) if name == "lr" else _fit_gbdt(x, y, 0)
        results = {s: evaluate(splits[s].user, y[s], model.predict_proba(x[s])[:, 1]) for s in ("valid", "test")}
        seconds = time.perf_counter() - started
        out[name] = [{"model": name, "seed": seed, "test": results["test"], "valid": results["valid"],
                      "best_epoch": 0, "seconds": seconds} for seed in seeds]  # fmt: skip
    return out
