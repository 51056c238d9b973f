"""The container engine behind `make compose-check`: one that answers, or one this process installs and starts.

``ensure_engine(install_script, log)`` returns an ``Engine``. When ``docker info`` answers, that engine is used as it
is. Otherwise, as root on Debian, ``docker/install-engine.sh`` installs dockerd, the docker CLI, buildx and Compose
v2 where any of them is missing, and dockerd is started in the background (its output in ``log``);
``Engine.stop()`` stops it again. An engine that was already running is never stopped. ``EngineUnavailable`` says
why no engine can run here (not root, no apt-get, dockerd would not start).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


class EngineUnavailable(RuntimeError):
    """No container engine answers and none can be installed or started here; the message says why."""


@dataclass
class Engine:
    version: str
    dockerd: subprocess.Popen[bytes] | None = None  # set when this process started dockerd

    @property
    def started_here(self) -> bool:
        return self.dockerd is not None

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop dockerd if this process started it (SIGTERM, then SIGKILL after ``timeout_s``)."""
        if self.dockerd is None or self.dockerd.poll() is not None:
            return
        self.dockerd.send_signal(signal.SIGTERM)
        try:
            self.dockerd.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.dockerd.kill()
            self.dockerd.wait()


def _run(*argv: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)


def engine_version() -> str | None:
    """The server version when ``docker info`` answers, else None."""
    if shutil.which("docker") is None:
        return None
    try:
        done = _run("docker", "info", "--format", "{{.ServerVersion}}")
    except subprocess.TimeoutExpired:
        return None
    out = done.stdout.strip()
    return out if done.returncode == 0 and out else None


def compose_v2() -> bool:
    """Whether `docker compose` (Compose v2) is there."""
    if shutil.which("docker") is None:
        return False
    return _run("docker", "compose", "version", "--short").returncode == 0


def _install(install_script: Path) -> None:
    if os.geteuid() != 0:
        raise EngineUnavailable("no container engine answers and installing one needs root")
    if shutil.which("apt-get") is None:
        raise EngineUnavailable("no container engine answers and there is no apt-get to install Debian's docker.io")
    print(f"engine: installing with {install_script}", flush=True)
    done = subprocess.run(["bash", str(install_script)], check=False)
    if done.returncode != 0:
        raise EngineUnavailable(f"{install_script} failed (exit {done.returncode})")


def _start_dockerd(log: Path, timeout_s: float) -> Engine:
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise EngineUnavailable("dockerd is not installed")
    if os.geteuid() != 0:
        raise EngineUnavailable("dockerd is installed but not running, and starting it needs root")
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"engine: starting dockerd (log {log})", flush=True)
    with log.open("ab") as out:
        proc = subprocess.Popen([dockerd], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    engine = Engine(version="", dockerd=proc)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise EngineUnavailable(f"dockerd exited with code {proc.returncode}:\n{tail}")
        version = engine_version()
        if version is not None:
            engine.version = version
            return engine
        time.sleep(1.0)
    engine.stop()
    raise EngineUnavailable(f"dockerd did not answer within {timeout_s:.0f} s (log {log})")


def ensure_engine(install_script: Path, log: Path, *, install: bool = True, timeout_s: float = 90.0) -> Engine:
    """An engine that answers ``docker info`` and has Compose v2: the running one, or one installed and started."""
    version = engine_version()
    if version is not None:
        if not compose_v2():
            if not install:
                raise EngineUnavailable("the engine answers but `docker compose` (Compose v2) is missing")
            _install(install_script)
        return Engine(version=version)
    if install and (shutil.which("dockerd") is None or not compose_v2()):
        _install(install_script)
    return _start_dockerd(log, timeout_s)
