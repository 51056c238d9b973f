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
    timed = ("forward_p50_ms", "forward_only_p50_ms", "build_ms", "build_ms_hard", "gsu_ms", "gsu_hard_ms", "stats_ms",
             "explore_p50_ms", "full_attention_p50_ms")  # fmt: skip
    ratios = ("stats_search_share", "explore_ratio", "speedup_vs_full_attention", "matmul_gflops", "floor_ms",
              "floor_ratio")  # fmt: skip
    described = ("flops", "history", "length", "distinct_items", "candidates", "k", "threads", "load_avg_1m")
    assert set(out) == {*timed, *ratios, *described}
    for key in (*timed, *ratios):
        assert math.isfinite(out[key]) and out[key] > 0, key
    assert isinstance(out["flops"], int) and out["flops"] > 0
    assert out["floor_ms"] == pytest.approx(out["flops"] / (out["matmul_gflops"] * 1e6), rel=0.05)
    assert out["floor_ratio"] == pytest.approx(out["forward_only_p50_ms"] / out["floor_ms"], rel=0.05)
    assert (out["length"], out["candidates"], out["k"], out["threads"]) == (3000, 30, 8, 1)


def test_bad_flag_is_named() -> None:
    parser = argparse.ArgumentParser()
    bench_model.add_arguments(parser)
    with pytest.raises(SystemExit, match="--candidates=0 must be >= 1"):
        bench_model.measure(parser.parse_args(["--candidates", "0"]))
