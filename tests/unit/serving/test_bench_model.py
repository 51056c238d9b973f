"""`longrank bench model` on a small request: the JSON fields are the fixed ones and the numbers are sane
(no timing goals here: those are the benchmark's business)."""

from __future__ import annotations

import argparse
import math

import faiss
import pytest
import torch

from bench import model as bench_model


def test_measure_reports_the_fixed_fields() -> None:
    parser = argparse.ArgumentParser()
    bench_model.add_arguments(parser)
    args = parser.parse_args(["--length", "3000", "--candidates", "30", "--k", "8", "--repeat", "2",
                              "--full-repeat", "1", "--threads", "1"])  # fmt: skip
    threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    try:
        out = bench_model.measure(args)  # sets torch and faiss threads to --threads
    finally:
        torch.set_num_threads(threads[0])
        faiss.omp_set_num_threads(threads[1])
    assert set(out) == {"forward_p50_ms", "forward_only_p50_ms", "explore_p50_ms", "explore_ratio",
                        "full_attention_p50_ms", "speedup_vs_full_attention"}  # fmt: skip
    for key in ("forward_p50_ms", "forward_only_p50_ms", "full_attention_p50_ms", "speedup_vs_full_attention",
                "explore_p50_ms", "explore_ratio"):
        assert math.isfinite(out[key]) and out[key] > 0


def test_bad_flag_is_named() -> None:
    parser = argparse.ArgumentParser()
    bench_model.add_arguments(parser)
    with pytest.raises(SystemExit, match="--candidates=0 must be >= 1"):
        bench_model.measure(parser.parse_args(["--candidates", "0"]))
