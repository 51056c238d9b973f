"""The fleet's control files (serving/fleet.py): generations, worker statuses, the reload lock, the wait."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from serving.fleet import Fleet


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)  # fmt: skip


def test_each_publish_is_the_next_generation(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    assert fleet.desired() is None
    first = fleet.publish("/a", "v1")
    second = Fleet(tmp_path, pid=123).publish("/b", "v2")  # another worker, same directory
    assert (first.generation, second.generation) == (1, 2)
    assert fleet.desired() == second


def test_statuses_are_of_live_workers_only(tmp_path: Path) -> None:
    me = Fleet(tmp_path)
    me.report(1, "v1")
    gone = Fleet(tmp_path, pid=_dead_pid())
    gone.report(1, "v0")
    assert [(s.pid, s.version) for s in me.statuses()] == [(os.getpid(), "v1")]
    assert not (tmp_path / "control" / "workers" / f"{gone.pid}.json").exists()  # cleaned up
    assert me.versions() == ["v1"]
    me.forget()
    assert me.statuses() == []


def test_one_reload_at_a_time(tmp_path: Path) -> None:
    a, b = Fleet(tmp_path), Fleet(tmp_path, pid=1)
    with a.exclusive() as first:
        assert first
        code = "import sys; from serving.fleet import Fleet; f = Fleet(sys.argv[1], pid=7)\n" \
               "with f.exclusive() as got: print(got)"  # fmt: skip
        other = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
        assert other.stdout.strip() == "False"  # flock is per open file: another process is refused
    with b.exclusive() as again:
        assert again


def test_the_wait_ends_when_every_worker_serves_or_one_failed(tmp_path: Path) -> None:
    me = Fleet(tmp_path)
    want = me.publish("/b", "v2")
    me.report(want.generation, "v2")
    assert asyncio.run(me.wait(want, workers=1, timeout_s=5)) == (True, me.statuses())
    done, statuses = asyncio.run(me.wait(want, workers=2, timeout_s=0.3))  # the second worker never reports
    assert not done and len(statuses) == 1
    me.report(want.generation, "v1", error="RuntimeError: out of memory")
    done, statuses = asyncio.run(me.wait(want, workers=1, timeout_s=5))
    assert not done and statuses[0].error is not None


def test_a_worker_asks_to_die_with_its_parent() -> None:
    code = "import os; from serving.fleet import die_with_parent; print(die_with_parent(os.getppid()))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True"  # Linux: prctl(PR_SET_PDEATHSIG) is available
