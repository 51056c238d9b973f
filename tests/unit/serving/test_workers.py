"""Several server processes: the per-worker thread budget, the environment handed to workers, `serve --workers`
argument errors, and /metrics in prometheus-client's multiprocess mode (real metric files written by separate
processes, since the mode is fixed when prometheus-client is first imported)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from cli import serve
from serving.metrics import Metrics
from serving.settings import SettingsError, load_settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("LONGRANK_WORKERS", "LONGRANK_TORCH_THREADS", "LONGRANK_INFERENCE_WORKERS", "LONGRANK_ARTIFACT",
                 "LONGRANK_STORE_URL", "LONGRANK_HOST", "LONGRANK_PORT", "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("cores", "workers", "threads", "slots"),
    [(2, 1, 1, 2), (2, 2, 1, 1), (8, 2, 4, 1), (8, 3, 2, 1), (4, 8, 1, 1), (16, 4, 4, 1)],
)
def test_each_worker_gets_its_share_of_the_cores(
    clean_env: pytest.MonkeyPatch, cores: int, workers: int, threads: int, slots: int
) -> None:
    clean_env.setattr(os, "cpu_count", lambda: cores)
    clean_env.setenv("LONGRANK_WORKERS", str(workers))
    s = load_settings()
    assert (s.workers, s.torch_threads, s.inference_slots()) == (workers, threads, slots)
    assert s.torch_threads * s.inference_slots() * s.workers <= max(cores, workers)


def test_the_admission_queue_is_shared_among_workers(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.delenv("LONGRANK_MAX_QUEUE", raising=False)
    assert load_settings(workers=1).max_queue == 32
    assert load_settings(workers=2).max_queue == 16
    assert load_settings(workers=64).max_queue == 1
    assert load_settings(workers=2, max_queue=40).max_queue == 40


def test_explicit_thread_settings_win(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setattr(os, "cpu_count", lambda: 8)
    clean_env.setenv("LONGRANK_TORCH_THREADS", "3")
    s = load_settings(workers=2)
    assert s.torch_threads == 3 and s.inference_slots() == 1
    assert load_settings(workers=2, inference_workers=5).inference_slots() == 5


def test_a_bad_worker_count_names_the_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LONGRANK_WORKERS", "0")
    with pytest.raises(SettingsError, match="LONGRANK_WORKERS"):
        load_settings()


def _args(**kw: object) -> argparse.Namespace:
    base = {"host": None, "port": None, "store_url": None, "artifact": None, "workers": None, "log_level": "info"}
    return argparse.Namespace(**{**base, **kw})


def test_workers_rebuild_the_cli_settings_from_their_environment(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setattr(os, "cpu_count", lambda: 4)
    args = _args(port=8123, store_url="redis://r:6379/0", artifact=str(tmp_path), workers=2)
    settings = load_settings(port=8123, store_url="redis://r:6379/0", artifact=str(tmp_path), workers=2)
    env = serve.worker_environment(args, settings)
    for key, value in env.items():
        clean_env.setenv(key, value)
    rebuilt = load_settings()
    assert rebuilt == settings
    assert env["LONGRANK_TORCH_THREADS"] == "2" and Path(env["LONGRANK_ARTIFACT"]).is_absolute()


@pytest.mark.parametrize("workers", [0, 65])
def test_serve_refuses_a_bad_worker_count(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], workers: int
) -> None:
    assert serve.run(_args(workers=workers)) == 2
    assert "--workers" in capsys.readouterr().err


@pytest.mark.parametrize("cores", [1, 2, 8])
def test_the_default_worker_count_is_the_cores(clean_env: pytest.MonkeyPatch, cores: int) -> None:
    clean_env.setattr(os, "cpu_count", lambda: cores)
    s = load_settings()
    assert s.workers == cores and s.torch_threads == 1 and s.max_queue == max(1, 32 // cores)


def test_model_info_is_a_gauge_with_the_old_version_at_zero_and_no_path(clean_env: pytest.MonkeyPatch) -> None:
    metrics = Metrics.create()
    metrics.model_info.info({"version": "v1", "variant": "sim_can"})
    metrics.model_info.info({"version": "v2", "variant": "sim_can"})
    text = generate_latest(metrics.registry).decode()
    assert 'longrank_model_info{variant="sim_can",version="v2"} 1.0' in text
    assert 'longrank_model_info{variant="sim_can",version="v1"} 0.0' in text
    assert "artifact" not in text  # /metrics shows no file path


WORKER = """
import json, os, sys
from serving.metrics import Metrics
m = Metrics.create()
m.events.labels("accepted").inc(int(sys.argv[1]))
m.in_flight.inc(int(sys.argv[2]))
m.model_info.info({"version": sys.argv[3], "variant": "sim_can"})
m.requests.labels("/v1/rank", "POST", "200").inc()
print(os.getpid())
"""

SCRAPE = """
import os, sys
from prometheus_client import generate_latest
from serving.metrics import Metrics
sys.stdout.write(generate_latest(Metrics.create().registry).decode())
"""


def _python(code: str, *args: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True)
    return done.stdout


def _value(text: str, prefix: str) -> float:
    lines = [x for x in text.splitlines() if x.startswith(prefix)]
    assert len(lines) == 1, (prefix, lines)
    return float(lines[0].rsplit(" ", 1)[1])


def test_metrics_of_several_processes_are_summed_in_one_scrape(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LONGRANK_")}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    pids = [_python(WORKER, "3", "2", "v1", env=env).strip(),  # two finished "workers" with different counts
            _python(WORKER, "4", "1", "v1", env=env).strip()]
    assert (tmp_path / f"gauge_livesum_{pids[1]}.db").exists()  # the second reaped the first's live gauge file
    text = _python(SCRAPE, env=env)
    assert _value(text, 'longrank_events_total{outcome="accepted"}') == 7.0  # counters: summed, dead ones included
    assert _value(text, 'longrank_requests_total{method="POST",route="/v1/rank",status="200"}') == 2.0
    assert "longrank_model_info{" not in text  # the model gauge is a live one: exited workers serve no model
    # in-flight is a live gauge: the writers have exited, and the scraping process reaped their files
    assert _value(text, "longrank_inference_in_flight ") == 0.0  # not 3
    assert not any((tmp_path / f"gauge_livesum_{pid}.db").exists() for pid in pids)


def test_run_directories_of_dead_masters_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip
    (tmp_path / f"longrank-run-{dead}-abc" / "control").mkdir(parents=True)
    (tmp_path / f"longrank-run-{os.getpid()}-def").mkdir()
    (tmp_path / "longrank-run-notapid").mkdir()
    removed = serve.remove_stale_run_dirs(tmp_path)
    assert [p.name for p in removed] == [f"longrank-run-{dead}-abc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"longrank-run-{os.getpid()}-def",
                                                                 "longrank-run-notapid"])  # fmt: skip


def test_a_held_port_is_waited_for_and_reported() -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        assert serve.wait_for_port("127.0.0.1", port, timeout_s=0.3) is False
    assert serve.wait_for_port("127.0.0.1", port, timeout_s=0.3) is True


def test_workers_get_the_log_level_of_the_master(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings(workers=2, log_level="warning")
    env = serve.worker_environment(_args(workers=2, log_level="warning"), settings)
    assert env["LONGRANK_LOG_LEVEL"] == "warning" and env["LONGRANK_WORKERS"] == "2"
