"""The open-loop load generator against a stand-in server (tests/unit/loadtest/standin_server.py, a real uvicorn
process on a free port): request counts follow the schedule, every status is counted as the stand-in decides it,
warm-up requests are sent but not counted, remote targets are refused, the CLI prints the fixed JSON fields and the
plots are PNG files. No timing asserts: counts and statuses only."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from cli.main import main
from loadtest.openloop import (
    LoadConfig,
    RemoteTargetError,
    RunOutcome,
    check_target,
    percentiles,
    run_load,
    sustained_rps,
    sweep,
)
from loadtest.payloads import PayloadSpec, body_dicts, make_bodies
from loadtest.plot import plot_cdf, plot_sweep

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SPEC = PayloadSpec(users=50, candidates=8, items=40, categories=5, seed=3)
JSON_FIELDS = {"offered_rps", "achieved_rps", "p50_ms", "p95_ms", "p99_ms", "p999_ms", "errors", "status_counts",
               "duration_s", "warmup_s", "requests", "generator_lag_p99_ms", "candidates"}


def _load_standin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("standin_server", HERE / "standin_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


standin = _load_standin()


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """Base URL of a stand-in server running in its own process for this module."""
    port = unused_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "standin_server.py"), str(port)], cwd=ROOT,
                            env={**os.environ, "STANDIN_SLOW": "1.5"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=0.5, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "stand-in server exited"
            assert time.monotonic() < deadline, "stand-in server did not start"
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def received(url: str) -> int:
    return int(httpx.get(f"{url}/stats", trust_env=False).json()["rank"])


def expected_statuses(bodies: list[bytes], indices: range) -> Counter[str]:
    """What the stand-in answers to requests ``indices`` (request i sends bodies[i % len]) with timeout < SLOW."""
    names = {"503": "503", "slow": "timeout", "200": "200"}
    return Counter(names[standin.kind(json.loads(bodies[i % len(bodies)])["user_id"])] for i in indices)


@pytest.fixture(scope="module")
def warm_run(server: str) -> tuple[RunOutcome, list[bytes], int]:
    """50 rps: 0.5 s warm-up + 2 s measured, timeout 0.5 s; returns the outcome, the bodies, requests received."""
    bodies = make_bodies(SPEC, 125)  # one body per request: the statuses of warm-up and measured parts differ
    before = received(server)
    config = LoadConfig(url=server, rate=50, duration=2, warmup=0.5, timeout=0.5, connections=16, payload=SPEC)
    outcome = run_load(config, bodies, progress=False)
    return outcome, bodies, received(server) - before


def test_open_loop_sends_rate_times_duration_and_counts_each_status(warm_run: tuple[RunOutcome, list[bytes], int]
                                                                     ) -> None:
    outcome, bodies, _ = warm_run
    s = outcome.summary
    expected = expected_statuses(bodies, range(25, 125))
    assert {"200", "503", "timeout"} <= set(expected)  # the payloads exercise every branch of the stand-in
    assert s["requests"] == 100
    assert s["status_counts"] == dict(expected)
    assert s["errors"] == expected["503"] + expected["timeout"]
    assert s["ok"] == expected["200"]
    assert s["offered_rps"] == 50.0
    assert s["achieved_rps"] == (100 - expected["timeout"]) / 2
    assert outcome.ok_latency_ms.size == expected["200"]


def test_warmup_requests_are_sent_but_not_counted(warm_run: tuple[RunOutcome, list[bytes], int]) -> None:
    outcome, bodies, server_saw = warm_run
    assert server_saw == 125
    assert outcome.summary["warmup_requests"] == 25
    # the measured statuses are those of requests 25..124, not of the first 100 sent
    assert expected_statuses(bodies, range(0, 100)) != expected_statuses(bodies, range(25, 125))
    assert outcome.summary["status_counts"] == dict(expected_statuses(bodies, range(25, 125)))


def test_latency_percentiles_cover_only_2xx_and_stay_under_the_timeout(
        warm_run: tuple[RunOutcome, list[bytes], int]) -> None:
    outcome, _, _ = warm_run
    s = outcome.summary
    ok = sorted(outcome.ok_latency_ms)
    assert s["p50_ms"] == round(percentiles(ok, [50])[0], 3)  # type: ignore[arg-type]
    assert s["p999_ms"] == round(ok[-1], 3)
    assert 0 < ok[0] <= ok[-1] <= 500  # deadline = scheduled + timeout, so nothing recorded beyond it
    assert s["p50_ms"] <= s["p95_ms"] <= s["p99_ms"] <= s["p999_ms"]  # type: ignore[operator]
    shed = outcome.latency_ms[outcome.status == 503]  # the stand-in's 503s, reported apart
    assert shed.size and s["shed_p99_ms"] == round(percentiles(sorted(shed), [99])[0], 3)  # type: ignore[arg-type]
    assert s["shed_p50_ms"] <= s["shed_p99_ms"]  # type: ignore[operator]


def test_connection_errors_are_counted_as_error() -> None:
    port = unused_port()  # nothing listens there once the probe socket is closed
    config = LoadConfig(url=f"http://127.0.0.1:{port}", rate=20, duration=0.25, warmup=0, timeout=1, payload=SPEC)
    s = run_load(config, progress=False).summary
    assert s["status_counts"] == {"error": 5}
    assert s["errors"] == 5
    assert s["achieved_rps"] == 0
    assert s["p50_ms"] is None


def test_a_timed_out_request_gives_its_connection_back(server: str) -> None:
    """One connection; request 0 hangs past its deadline, the next three must still get the connection."""
    slow, fast = (json.dumps({"user_id": u, "candidates": [{"item_id": 1}]}).encode() for u in ("u1", "u2"))
    assert (standin.kind("u1"), standin.kind("u2")) == ("slow", "200")
    config = LoadConfig(url=server, rate=4, duration=1, warmup=0, timeout=0.5, connections=1, payload=SPEC)
    outcome = run_load(config, [slow, fast, fast, fast], progress=False)
    assert outcome.summary["status_counts"] == {"200": 3, "timeout": 1}
    assert outcome.status[0] == -1


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # unsorted on purpose
    assert percentiles(values, [50, 95, 99, 99.9, 100]) == [50, 95, 99, 100, 100]
    assert percentiles([7.0], [50, 99.9]) == [7, 7]
    assert percentiles([1.0, 2.0, 3.0, 4.0], [50]) == [2]
    assert percentiles([], [50, 99]) == [None, None]


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://127.8.9.10", "http://localhost:1", "http://[::1]:80"])
def test_loopback_targets_are_accepted(url: str) -> None:
    assert check_target(url) == url


@pytest.mark.parametrize("url", ["http://10.0.0.1:8000", "http://example.com", "http://0.0.0.0:8000", "http://[::2]"])
def test_remote_targets_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(RemoteTargetError, match="loopback"):
        check_target(url)
    assert check_target(url, allow_remote=True) == url


def test_cli_refuses_remote_target_and_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["loadtest", "--url", "http://192.0.2.1:8000", "--rate", "1", "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert "not a loopback address" in err and "--allow-remote" in err
    assert main(["loadtest", "--url", "http://127.0.0.1:1", "--rate", "0", "--duration", "1"]) == 2
    assert "--rate must be between" in capsys.readouterr().err
    assert main(["loadtest", "--url", "http://127.0.0.1:1", "--rate", "5", "--candidates", "0"]) == 2
    assert "--candidates must be between" in capsys.readouterr().err


def test_cli_prints_one_json_object_and_writes_the_plot(server: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "cdf.png"
    code = main(["loadtest", "--url", server, "--rate", "40", "--duration", "0.5", "--warmup", "0.25", "--json",
                 "--plot", str(png), "--candidates", "12", "--users", "30", "--timeout", "0.15", "--no-progress"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= JSON_FIELDS
    assert result["requests"] == 20 and result["candidates"] == 12 and result["warmup_s"] == 0.25
    assert sum(result["status_counts"].values()) == 20
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_plot_cdf_writes_a_png(warm_run: tuple[RunOutcome, list[bytes], int], tmp_path: Path) -> None:
    out = plot_cdf(warm_run[0], tmp_path / "one.png")
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_sweep_runs_each_rate_in_order_and_plots(server: str, tmp_path: Path) -> None:
    config = LoadConfig(url=server, rate=10, duration=0.5, warmup=0, timeout=0.15, payload=SPEC)
    outcomes = sweep(config, [40, 20], progress=False)
    assert [o.summary["offered_rps"] for o in outcomes] == [20.0, 40.0]
    assert [o.summary["requests"] for o in outcomes] == [10, 20]
    assert plot_sweep(outcomes, tmp_path / "sweep.png").read_bytes()[:8] == PNG_MAGIC


def test_payloads_are_deterministic_and_within_the_spec() -> None:
    bodies = body_dicts(SPEC, 40)
    assert make_bodies(SPEC, 40) == make_bodies(SPEC, 40)
    category_of: dict[int, int] = {}
    for body in bodies:
        assert str(body["user_id"]).startswith("u") and 0 <= int(str(body["user_id"])[1:]) < SPEC.users
        candidates = body["candidates"]
        assert isinstance(candidates, list) and len(candidates) == SPEC.candidates
        ids = [c["item_id"] for c in candidates]
        assert len(set(ids)) == len(ids) and all(0 <= i < SPEC.items for i in ids)
        for c in candidates:
            assert 0 <= c["category_id"] < SPEC.categories
            assert category_of.setdefault(c["item_id"], c["category_id"]) == c["category_id"]
    plain = body_dicts(PayloadSpec(users=943, candidates=3, user_prefix="", seed=1), 20)
    assert all(str(b["user_id"]).isdigit() for b in plain)


def test_loadtest_imports_no_torch_faiss_or_web_framework() -> None:
    code = ("import sys, json, cli.loadtest, loadtest.plot; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert not set(json.loads(out.stdout)) & {"torch", "faiss", "fastapi", "starlette", "models"}


def test_locustfile_imports_and_defines_a_rank_user() -> None:
    """Locust monkey-patches the stdlib with gevent on import, so it is loaded in a separate interpreter."""
    code = ("import runpy; ns = runpy.run_path('loadtest/locustfile.py'); u = ns['RankUser']; "
            "from locust import HttpUser; assert issubclass(u, HttpUser); print(len(ns['_bodies']()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "LONGRANK_LOAD_USERS": "10", "LONGRANK_LOAD_CANDIDATES": "7"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "256"


def test_user_ids_can_be_zero_padded_to_match_synthetic_ids() -> None:
    from loadtest.payloads import PayloadSpec, body_dicts

    ids = {b["user_id"] for b in body_dicts(PayloadSpec(users=200, user_width=6, candidates=3, items=10), 50)}
    assert all(isinstance(u, str) and len(u) == 7 and u.startswith("u") and u[1:].isdigit() for u in ids)
    assert any(int(str(u)[1:]) >= 10 for u in ids)


def _summary(rate: float, p99: float | None, ok: int, requests: int = 1000) -> dict[str, object]:
    return {"offered_rps": rate, "p99_ms": p99, "ok": ok, "requests": requests}


def test_sustained_rps_is_the_highest_rate_within_p99_and_success() -> None:
    runs = [_summary(50, 20.0, 1000), _summary(100, 59.9, 999), _summary(150, 61.0, 1000), _summary(200, 30.0, 998)]
    assert sustained_rps(runs) == 100.0  # 150: p99 over 60 ms; 200: 99.8% 2xx
    assert sustained_rps([_summary(100, 59.0, 1000), _summary(50, 70.0, 1000)]) == 100.0  # judged rate by rate
    assert sustained_rps([_summary(10, None, 0), _summary(20, 80.0, 1000)]) is None


def test_cli_sweep_prints_sustained_rps_and_pins_the_generator(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    cpu = min(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    try:
        code = main(["loadtest", "--url", server, "--rates", "20,40", "--duration", "0.5", "--warmup", "0", "--json",
                     "--candidates", "12", "--users", "30", "--timeout", "0.15", "--no-progress",
                     "--generator-cpus", str(cpu)])  # fmt: skip
        assert os.sched_getaffinity(0) == {cpu}
    finally:
        os.sched_setaffinity(0, before)
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["sustained_rps"] == sustained_rps(result["runs"])
    assert main(["loadtest", "--url", server, "--rate", "5", "--generator-cpus", "4096"]) == 2
    assert "--generator-cpus [4096]" in capsys.readouterr().err
