"""`longrank train` end to end on a tiny generated dataset: a loadable artifact with metrics.json and the curves
PNG; clear errors for bad input; the same seed gives the same metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.data.synthetic import SyntheticConfig, write_synthetic

LONGRANK = [sys.executable, "-m", "cli.main"]
TINY = ["--set", "n_clusters=16", "--set", "nprobe=4", "--set", "long_k=16"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "data"
    cfg = SyntheticConfig(users=12, length=300, min_length=150, categories=12, samples_per_user=10, seed=3)
    write_synthetic(out, cfg, progress=False)
    return out


def longrank(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LONGRANK, *map(str, args)], capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_train_writes_a_loadable_soft_search_artifact(tiny_data: Path, tmp_path: Path) -> None:
    from models.artifacts import load
    from models.ranker import score
    from retrieval.gsu import SoftSearch

    out = tmp_path / "artifact"
    proc = longrank("train", "--data", tiny_data, "--model", "sim_soft", "--out", out, "--epochs", "1", "--quiet",
                    "--json", *TINY)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["variant"] == "sim_soft" and metrics["epochs_run"] == 1
    assert set(metrics["test"]) == {"auc", "gauc", "logloss"}
    assert printed["test"] == metrics["test"]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    artifact = load(out)
    assert artifact.version == printed["version"]
    assert artifact.config.variant == "sim_soft" and artifact.config.long_k == 16
    assert artifact.item_index is not None and 1 <= artifact.item_index.n_clusters <= 16
    assert artifact.config.n_clusters == artifact.item_index.n_clusters  # the config records the index it has
    assert artifact.dgu is not None  # AGE's gate is trained with the model and travels in the artifact
    tables = artifact.lookups.items
    assert tables is not None and artifact.config.item_buckets == tables.vocab.size  # sized to the data
    assert metrics["vocabulary"]["item_collision_rate"] < 0.05  # only items first seen after training share rows
    # the loaded model scores a history through the soft search built on its own item index
    from models.data.samples import load_samples

    samples = load_samples(tiny_data)
    history = samples.histories[0]
    gsu = SoftSearch(artifact.item_index, artifact.config.long_k, artifact.config.nprobe)
    probs = score(artifact.model, history, [1, 2, 3], [0, 1, 2], int(history["ts"][-1]) + 60, gsu,
                  lookups=artifact.lookups)
    assert probs.shape == (3,) and np.isfinite(probs).all() and ((probs > 0) & (probs < 1)).all()


@pytest.mark.slow  # imports torch in-process: a few seconds
def test_train_rejects_bad_input(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    def err(*args: str | Path) -> str:
        assert main(["train", *map(str, args)]) != 0
        return capsys.readouterr().err

    out = tmp_path / "a"
    message = err("--data", tiny_data, "--model", "transformer", "--out", out)
    assert "--model 'transformer' is unknown" in message and "sim_can" in message
    message = err("--data", tmp_path / "missing", "--model", "din", "--out", out)
    assert "--data" in message and "not a directory" in message
    assert "--epochs must be >= 1" in err("--data", tiny_data, "--model", "din", "--out", out, "--epochs", "0")
    assert "heads=0" in err("--data", tiny_data, "--model", "din", "--out", out, "--set", "heads=0")
    assert not out.exists()


@pytest.mark.slow
def test_same_seed_gives_identical_metrics(tiny_data: Path) -> None:
    from models.data.samples import load_samples
    from models.train import TrainOptions, train

    samples = load_samples(tiny_data)
    overrides = {"long_k": 16}
    runs = [
        train(samples, TrainOptions(model="sim_can", epochs=2, seed=seed, progress=False, overrides=overrides))
        for seed in (5, 5, 6)
    ]
    assert runs[0].history == runs[1].history
    assert runs[0].test == runs[1].test
    np.testing.assert_array_equal(runs[0].test_probs, runs[1].test_probs)
    assert runs[2].history != runs[0].history  # the seed matters (initialisation, dropout, shuffling)


def test_grouped_gsu_search_gives_the_features_of_a_per_sample_search(tiny_data: Path) -> None:
    """build_rows searches and counts once per shared history; the features must equal build_batch's own per-row
    search and statistics."""
    from models.batches import build_rows
    from models.data.samples import load_samples
    from models.features import build_batch
    from models.train import TrainOptions, build_config
    from retrieval.gsu_hybrid import build_gsu

    samples = load_samples(tiny_data)
    split = samples.train
    config, lookups, index = build_config(samples, TrainOptions(model="sim_hybrid", overrides={"long_k": 16}))
    gsu = build_gsu(config.gsu, config.long_k, index, config.nprobe, config.item_hits)
    rows = np.random.default_rng(0).permutation(len(split))[:40]
    assert len(set(split.user[rows].tolist())) < len(rows)  # several samples share a user's history
    got = build_rows(samples, split, rows, config, gsu, None, lookups)
    histories = [samples.histories[u][:n] for u, n in zip(split.user[rows], split.hist_len[rows], strict=True)]
    want = build_batch(histories, np.arange(len(rows)), split.item[rows], split.category[rows], split.ts[rows],
                       config, gsu, lookups=lookups)  # fmt: skip
    for name in ("long_item", "long_cat", "long_action", "long_dt", "long_mask", "long_tag", "short_item", "cand_item"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    for name in ("long_rel", "cand_stats"):  # products of vectors: BLAS rounds other batch shapes a little apart
        torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=1e-5, atol=1e-6)
    assert bool(got.long_mask.any())
    with pytest.raises(ValueError, match="item tables"):
        build_rows(samples, split, rows, config, gsu, None)  # a vocabulary model without its lookups
