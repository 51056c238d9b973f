"""`longrank bench serve` end to end on a small request: a real server on the default model's kind of artifact (the
hybrid search needs the item tables and index), HTTP against the in-process pipeline, the bench keys removed."""

from __future__ import annotations

import json
import subprocess
import sys

import redis


def test_bench_serve_measures_both_paths_and_cleans_up(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    before = {k for k in client.scan_iter("bench-serve-*")}
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "bench", "serve", "--json", "--redis-url", redis_url, "--length", "3000",
         "--candidates", "40", "--repeat", "3"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["degraded"] is False and out["candidates"] == 40 and out["length"] == 3000
    assert out["pipeline_p50_ms"] > 0 and out["http_p50_ms"] > 0
    assert abs(out["overhead_ratio"] - out["http_p50_ms"] / out["pipeline_p50_ms"]) < 2e-3
    assert {k for k in client.scan_iter("bench-serve-*")} == before  # nothing of the bench's left behind
    client.close()
