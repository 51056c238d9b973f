"""The worker fleet of ``longrank serve --workers N``: workers that die with their master, and a reload that every
worker follows.

Life: each worker asks Linux to send it SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``, through ctypes)
and checks that the parent it was started by is still there, so a ``kill -9`` of the master takes the workers down
too (they close the shared listening socket at once and finish what they hold) and a new ``longrank serve`` can
bind the port within seconds. uvicorn's supervisor restarts a worker that dies.

Reload: the master gives every worker one run directory (``LONGRANK_RUN_DIR``); ``control/`` in it holds

    model.json           {"generation", "artifact", "version"}: the model the fleet must serve (atomic replace)
    workers/<pid>.json   {"pid", "generation", "version", "error"}: what each worker serves now
    reload.lock          flock: one reload at a time across the fleet

``POST /v1/admin/reload`` on any worker loads and verifies the artifact itself (a bad one is refused before the
fleet hears of it), publishes the next generation, swaps its own model, then waits until every live worker reports
that generation (each polls model.json every 0.2 s and loads the artifact in a thread: requests keep being served
by the old model meanwhile). It answers 200 when all N workers serve the new version, and otherwise names the
workers that did not (409 ``reload_incomplete``). A worker (re)started later reads model.json first, so a restarted
worker serves the reloaded model, not the one the fleet started with. A new master starts from LONGRANK_ARTIFACT.
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("longrank.fleet")
PR_SET_PDEATHSIG = 1
POLL_S = 0.2


def die_with_parent(expected_parent: int | None) -> bool:
    """Have the kernel send this process SIGTERM when its parent exits; exit now if the parent is already gone.
    Returns False where prctl is not available (not Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if expected_parent is not None and os.getppid() != expected_parent:  # the master died before prctl
        os.kill(os.getpid(), signal.SIGTERM)
    return True


@dataclass(frozen=True)
class Desired:
    generation: int
    artifact: str
    version: str


@dataclass(frozen=True)
class WorkerStatus:
    pid: int
    generation: int
    version: str | None
    error: str | None = None


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


class Fleet:
    """This worker's view of the fleet's control directory."""

    def __init__(self, run_dir: Path, pid: int | None = None) -> None:
        self.dir = Path(run_dir) / "control"
        self.workers_dir = self.dir / "workers"
        self.workers_dir.mkdir(parents=True, exist_ok=True)
        self.pid = pid or os.getpid()

    # -- the desired model -------------------------------------------------------------------------------------

    def desired(self) -> Desired | None:
        try:
            data = json.loads((self.dir / "model.json").read_text())
        except (OSError, ValueError):
            return None
        return Desired(int(data["generation"]), str(data["artifact"]), str(data["version"]))

    def publish(self, artifact: str, version: str) -> Desired:
        current = self.desired()
        want = Desired((current.generation if current else 0) + 1, artifact, version)
        _write_atomic(self.dir / "model.json", asdict(want))
        return want

    @contextmanager
    def exclusive(self) -> Iterator[bool]:
        """The fleet-wide reload lock, without waiting: yields False when another worker holds it."""
        with (self.dir / "reload.lock").open("a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- worker statuses ---------------------------------------------------------------------------------------

    def report(self, generation: int, version: str | None, error: str | None = None) -> None:
        _write_atomic(self.workers_dir / f"{self.pid}.json", asdict(WorkerStatus(self.pid, generation, version, error)))

    def forget(self) -> None:
        (self.workers_dir / f"{self.pid}.json").unlink(missing_ok=True)

    def statuses(self) -> list[WorkerStatus]:
        """Every live worker's status (files of dead workers are removed)."""
        out = []
        for path in self.workers_dir.glob("*.json"):
            try:
                data = json.loads(path.read_text())
                status = WorkerStatus(int(data["pid"]), int(data["generation"]), data.get("version"),
                                      data.get("error"))  # fmt: skip
            except (OSError, ValueError, KeyError):
                continue
            if alive(status.pid):
                out.append(status)
            else:
                path.unlink(missing_ok=True)
        return sorted(out, key=lambda s: s.pid)

    def versions(self) -> list[str]:
        return sorted({s.version for s in self.statuses() if s.version is not None})

    async def wait(self, want: Desired, workers: int, timeout_s: float) -> tuple[bool, list[WorkerStatus]]:
        """Wait until ``workers`` live workers serve ``want`` (True), or one failed to load it, or the timeout
        passed (False); returns the statuses seen last."""
        deadline = time.monotonic() + timeout_s
        while True:
            statuses = self.statuses()
            done = [s for s in statuses if s.generation >= want.generation and s.version == want.version]
            failed = [s for s in statuses if s.generation >= want.generation and s.error is not None]
            if len(done) >= workers:
                return True, statuses
            if failed and len(done) + len(failed) >= min(workers, len(statuses)):
                return False, statuses
            if time.monotonic() > deadline:
                return False, statuses
            await asyncio.sleep(POLL_S / 2)
