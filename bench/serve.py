"""`longrank bench serve`: what HTTP adds to the ranking pipeline, on a real uvicorn server and a real Redis.

Set-up: the request of ``bench model`` (bench/workload.py: one item-interest user with ``--length`` behaviours,
default 54,000, and ``--candidates`` candidates, default 500, over 20 of the user's categories), the user's history in
Redis under a bench key prefix, and a ``sim_can`` artifact with random weights (a forward costs the same whatever the
weights) and the item tables and index fitted on the workload's histories. Then, in one run:

- ``pipeline_p50_ms``: ``serving.pipeline.Ranker.rank`` in this process (store read, GSU, model, sort) — the same code
  the server runs, with the same settings;
- ``http_p50_ms`` / ``http_p99_ms``: ``POST /v1/rank`` to ``longrank serve`` (a separate process) over loopback,
  one request at a time on a keep-alive connection (stdlib http.client, so the client adds little), from send to the
  last byte of the answer;
- ``overhead_ratio`` = HTTP p50 ÷ pipeline p50 (lower is better; goal <= 1.5).
The server is started before this process imports torch and is stopped at the end; the bench keys are deleted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", default=os.environ.get("LONGRANK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--length", type=int, default=54_000, help="behaviours of the benchmark user")
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=200, help="timed requests on each path")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per inference (the service default is 1)")
    parser.add_argument("--artifact", help="artifact to serve (default: a random-weight sim_can built here)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _columns(history: Any, user: str) -> dict[str, Any]:
    """The workload user's behaviours as EventBatch columns."""
    return {"user_id": [user] * len(history), **{name: history[name] for name in ("item_id", "category_id", "ts",
                                                                                   "action")}}  # fmt: skip


def _build_artifact(directory: Path, work: Any, base: Any) -> Path:
    import torch

    from bench.workload import sized_config
    from models.artifacts import save
    from models.ranker import RankerModel

    torch.manual_seed(0)
    config = sized_config(base, work)
    save(RankerModel(config).eval(), config, directory, metrics={"note": "random weights for benchmarking"},
         item_index=work.index, lookups=work.lookups)  # fmt: skip
    return directory


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    import httpx

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"longrank bench serve: the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("longrank bench serve: the server did not become ready in time")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from tqdm import tqdm

    from retrieval.events import EventBatch
    from retrieval.store import open_store

    prefix = f"bench-serve-{uuid.uuid4().hex[:8]}"
    store_url = f"{args.redis_url}{'&' if '?' in args.redis_url else '?'}key_prefix={prefix}"
    from bench.workload import build
    from models.config import ModelConfig

    base = ModelConfig.for_variant("sim_can")
    work = build("items", args.length, args.candidates, 0, base.vector_dim, base.n_clusters)
    writer = open_store(store_url)
    writer.append(EventBatch.from_columns(**_columns(work.history, "bench-user")))
    items, cand_cats = work.items, work.cats
    body = {
        "user_id": "bench-user",
        "candidates": [{"item_id": int(i), "category_id": int(c)} for i, c in zip(items, cand_cats, strict=True)],
    }
    workdir = Path(tempfile.mkdtemp(prefix="longrank-bench-serve-"))
    artifact = Path(args.artifact) if args.artifact else _build_artifact(workdir / "artifact", work, base)
    port = _free_port()
    env = {
        **os.environ,
        "LONGRANK_STORE_URL": store_url,
        "LONGRANK_ARTIFACT": str(artifact),
        "LONGRANK_TORCH_THREADS": str(args.threads),
        "LONGRANK_INFERENCE_WORKERS": "1",
        "LONGRANK_WORKERS": "1",  # one process, like the in-process pipeline it is compared with
        "LONGRANK_ACCESS_LOG": "false",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--log-level", "warning"], env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, server)
        http_ms: list[float] = []
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # keep-alive; a thin client
        payload = json.dumps(body).encode()
        headers = {"content-type": "application/json"}
        answer = b""
        for i in tqdm(range(args.repeat + 10), desc="http", file=sys.stderr):
            start = time.perf_counter()
            conn.request("POST", "/v1/rank", body=payload, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            if i >= 10:
                http_ms.append((time.perf_counter() - start) * 1e3)
            if response.status != 200:
                raise SystemExit(f"longrank bench serve: /v1/rank answered {response.status}: {answer[:300]!r}")
        conn.close()
        degraded = json.loads(answer)["degraded"]
    finally:
        server.terminate()
        server.wait(timeout=30)

    pipeline_ms = _pipeline_times(store_url, artifact, args, items, cand_cats)
    writer.delete("bench-user")
    writer.close()
    pipeline_p50 = statistics.median(pipeline_ms)
    http_p50 = statistics.median(http_ms)
    return {
        "pipeline_p50_ms": round(pipeline_p50, 3),
        "http_p50_ms": round(http_p50, 3),
        "http_p99_ms": round(_percentile(http_ms, 99), 3),
        "overhead_ratio": round(http_p50 / pipeline_p50, 3),
        "length": args.length,
        "candidates": args.candidates,
        "threads": args.threads,
        "degraded": degraded,
    }


def _pipeline_times(
    store_url: str, artifact: Path, args: argparse.Namespace, items: np.ndarray, cats: np.ndarray
) -> list[float]:
    from tqdm import tqdm

    from models.runtime import set_threads
    from serving.metrics import Metrics
    from serving.model_state import load_model
    from serving.pipeline import Ranker
    from serving.settings import Settings

    set_threads(args.threads)
    settings = Settings(store_url=store_url)
    from retrieval.store import open_store

    reader = open_store(store_url, settings.store_options(timeout_s=settings.store_read_budget_s))
    ranker = Ranker(reader, Metrics.create())
    model = load_model(artifact)
    times: list[float] = []
    for i in tqdm(range(args.repeat + 10), desc="pipeline", file=sys.stderr):
        start = time.perf_counter()
        ranked = ranker.rank(model, "bench-user", items, cats, len(items))
        if i >= 10:
            times.append((time.perf_counter() - start) * 1e3)
    reader.close()
    assert not ranked.degraded
    return times
