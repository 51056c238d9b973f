"""`longrank experiment` end to end on a tiny item-interest dataset: a long-history variant with item tables trains
through the experiment's worker processes (their shared feature caches), and the JSON result holds what every
experiment table must: the variant's test metrics, the LR / GBDT baselines, the noise-free ceiling, the margin over
the best baseline and the GSU recall per search kind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from models.data.synthetic_items import ItemInterestConfig, write_item_interest

LONGRANK = [sys.executable, "-m", "cli.main"]


@pytest.fixture(scope="module")
def tiny_items(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-items") / "data"
    cfg = ItemInterestConfig(users=30, length=600, min_length=300, items=1500, samples_per_user=12, seed=4)
    write_item_interest(out, cfg, progress=False)
    return out


@pytest.mark.slow
def test_experiment_trains_an_item_table_variant_beside_the_baselines(tiny_items: Path) -> None:
    proc = subprocess.run(
        [*LONGRANK, "experiment", "synthetic", "--data", str(tiny_items), "--interest", "items",
         "--models", "din,sim_hybrid", "--seeds", "1", "--workers", "1", "--epochs", "1", "--json", "--quiet",
         "--set", "n_clusters=8", "--set", "nprobe=2", "--set", "long_k=16"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    for model in ("din", "sim_hybrid"):
        row = result["models"][model]
        assert row["seeds"] == [0] and 0.0 <= row["auc_mean"] <= 1.0
    assert set(result["baselines"]) >= {"lr", "gbdt"}
    assert 0.5 < result["ceiling_auc"] <= 1.0
    margin = result["margin_over_best_baseline"]
    assert margin["baseline"] in ("lr", "gbdt")
    assert margin["by_model"]["sim_hybrid"] == pytest.approx(
        result["models"]["sim_hybrid"]["auc_mean"] - margin["auc"], abs=1e-4)  # fmt: skip
    assert result["gsu_recall"], "the GSU recall per search kind is part of every synthetic experiment"


def test_experiment_refuses_an_unknown_variant_by_name(tiny_items: Path) -> None:
    proc = subprocess.run([*LONGRANK, "experiment", "synthetic", "--data", str(tiny_items), "--models", "sim_bogus"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode != 0
    assert "sim_bogus" in proc.stderr and "--models" in proc.stderr


def test_bench_gsu_reports_recall_per_search_kind_on_a_dataset(tiny_items: Path) -> None:
    proc = subprocess.run(
        [*LONGRANK, "bench", "gsu", "--json", "--length", "2000", "--candidates", "50", "--items", "5000",
         "--categories", "50", "--clusters", "16", "--nprobe", "4", "--buckets", "4096", "--repeat", "1",
         "--data", str(tiny_items)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    recall = json.loads(proc.stdout)["data_recall"]
    assert recall["data"] == str(tiny_items)
    for kind in ("hard", "soft", "hybrid"):
        row = recall[kind]
        assert row["target_samples"] > 0 and 0.0 <= row["target_recall"] <= 1.0
        assert row["evidence_samples"] > 0 and 0.0 <= row["evidence_recall"] <= 1.0
    # the hybrid search keeps the target item's own behaviours first: it finds every re-engaged target
    assert recall["hybrid"]["target_recall"] == 1.0


def test_bench_gsu_refuses_a_directory_that_is_not_a_dataset(tmp_path: Path) -> None:
    proc = subprocess.run([*LONGRANK, "bench", "gsu", "--data", str(tmp_path)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode != 0 and "--data" in proc.stderr and "meta.json" in proc.stderr
