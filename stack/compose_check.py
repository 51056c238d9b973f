"""``make compose-check``: docker-compose.yml for real: images built, the stack up, checked through its ports.

Steps, each printed with its time; the first failure stops the check (exit 1). The HTTP probes of the running
stack are in stack/stack_probes.py.

    engine    a container engine that answers (installed and started when none runs and we are root: see
              stack/container_engine.py; exit 77, or 0 with --skip-without-engine, when none can run here)
    bases     the official base images when they exist or can be pulled, else docker/local-bases.sh's stand-ins
              (PYTHON_IMAGE / REDIS_IMAGE / PROMETHEUS_IMAGE set by the user win)
    build     docker compose build (a directory holding the pinned CPU torch wheel, if found, is passed as the
              "wheels" build context through a temporary override file)
    up        docker compose up -d: redis, the bootstrap (`longrank demo`: data, train, ingest), the ranker
    healthy   the ranker's healthcheck passes
    rank      POST /v1/rank through the published port on 127.0.0.1
    event     POST /v1/events; the user's history grows by it; the same event_id again is a duplicate
    restart   the Redis container recreated on its volume (AOF) and the ranker restarted: the event is still there
    load      the "load" profile: Locust, 2 users paced to 5 req/s each for 15 s through its web API, no failure
              other than shedding by admission control (503 overloaded, at most 25% of the requests)
    observe   the "observe" profile: Prometheus scrapes the ranker (up == 1)

Whatever happens, `docker compose down -v` removes every container, network and volume of the check's own
project ("longrank-check", so a user's "longrank" stack is never touched), and dockerd is stopped if it was started
here. Images stay: the base images, the built image and BuildKit's cache are what make the next run fast. Every
published port is on 127.0.0.1 and picked free; the load is bounded (at most 20 req/s for at most 30 s).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from stack.container_engine import Engine, EngineUnavailable, ensure_engine
from stack.redis_procs import free_port
from stack.stack_probes import CheckFailed, event_still_there, fail, locust_run, post_event, prometheus_scrapes, rank

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
PROJECT = "longrank-check"
HOST = "127.0.0.1"
BASE_VARS = ("PYTHON_IMAGE", "REDIS_IMAGE", "PROMETHEUS_IMAGE")
PORT_VARS = ("RANKER_HOST_PORT", "REDIS_HOST_PORT", "LOCUST_HOST_PORT", "PROMETHEUS_HOST_PORT")
APP_SERVICES = ("bootstrap", "ranker", "locust")  # the services built from docker/Dockerfile
MAX_LOAD_RPS = 20.0
MAX_LOAD_SECONDS = 30.0
EXIT_NO_ENGINE = 77
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
PROGRESS = re.compile(r"\d+%\||█|\[\d+:\d+<|(/s|loss=[\d.]+)[,\]]|^.{0,7}\]$")  # bits of tqdm bars


@dataclass
class Report:
    """The steps done so far: (name, seconds, ok)."""

    steps: list[tuple[str, float, bool]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    left_behind: list[str] = field(default_factory=list)  # kinds of objects `down -v` did not remove

    @contextmanager
    def step(self, name: str, what: str) -> Iterator[None]:
        print(f"\n==> {name}: {what}", flush=True)
        t0 = time.monotonic()
        ok = False
        try:
            yield
            ok = True
        finally:
            seconds = time.monotonic() - t0
            self.steps.append((name, seconds, ok))
            print(f"<== {name}: {'ok' if ok else 'FAILED'} in {seconds:.1f} s", flush=True)

    def summary(self) -> str:
        lines = ["", "compose-check step times:"]
        lines += [f"  {name:<9} {seconds:7.1f} s  {'ok' if ok else 'FAILED'}" for name, seconds, ok in self.steps]
        lines.append(f"  {'total':<9} {time.monotonic() - self.started:7.1f} s")
        return "\n".join(lines)


def _run(argv: Sequence[str], *, env: dict[str, str] | None = None, capture: bool = False,
         timeout_s: float = 600.0, check: bool = True) -> str:
    """Run a command, its stderr streamed and its stdout too unless ``capture`` (then returned); raise CheckFailed
    when it fails."""
    print(f"$ {' '.join(argv)}", flush=True)
    try:
        done = subprocess.run(list(argv), env=env, text=True, timeout=timeout_s, check=False,
                              stdout=subprocess.PIPE if capture else None)
    except subprocess.TimeoutExpired:
        fail(f"{argv[0]} {argv[1] if len(argv) > 1 else ''} took longer than {timeout_s:.0f} s")
    if check and done.returncode != 0:
        fail(f"exit code {done.returncode}: {' '.join(argv)}\n{(done.stdout or '')[-3000:]}")
    return done.stdout or ""


def _official_defaults() -> dict[str, str]:
    """The official images docker-compose.yml falls back to: ${PYTHON_IMAGE:-python:3.11-slim} and so on."""
    text = COMPOSE_FILE.read_text()
    found = dict(re.findall(r"\$\{(" + "|".join(BASE_VARS) + r"):-([^}]+)\}", text))
    missing = [name for name in BASE_VARS if name not in found]
    if missing:
        fail(f"docker-compose.yml has no default for {missing}")
    return found


def _image_available(image: str) -> bool:
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False).returncode == 0:
        return True
    try:
        pulled = subprocess.run(["docker", "pull", "--quiet", image], capture_output=True, text=True, timeout=600,
                                check=False)
    except subprocess.TimeoutExpired:
        print(f"   cannot pull {image}: no answer within 600 s", flush=True)
        return False
    if pulled.returncode != 0:
        print(f"   cannot pull {image}: {pulled.stderr.strip()[-200:]}", flush=True)
    return pulled.returncode == 0


def choose_bases(mode: str) -> dict[str, str]:
    """PYTHON_IMAGE, REDIS_IMAGE, PROMETHEUS_IMAGE for docker compose: the user's, the official or the local ones."""
    if all(os.environ.get(name) for name in BASE_VARS):
        print("   from the environment", flush=True)
        return {name: os.environ[name] for name in BASE_VARS}
    official = {**_official_defaults(), **{n: os.environ[n] for n in BASE_VARS if os.environ.get(n)}}
    if mode == "official" or (mode == "auto" and all(_image_available(image) for image in official.values())):
        return official
    out = _run(["bash", str(REPO / "docker" / "local-bases.sh")], capture=True, timeout_s=1200)
    print(out.rstrip(), flush=True)
    local = dict(re.findall(r"^export (\w+)=(\S+)$", out, re.M))
    return {name: os.environ.get(name) or local[name] for name in BASE_VARS}


def pinned_torch() -> str:
    match = re.search(r"^torch==(\S+)", (REPO / "constraints.txt").read_text(), re.M)
    return match.group(1) if match else fail("constraints.txt pins no torch version")


def find_wheels(explicit: str | None) -> Path | None:
    """A directory holding the pinned CPU torch wheel: --wheels, LONGRANK_WHEELS_DIR, or one of pip's find-links."""
    if explicit or os.environ.get("LONGRANK_WHEELS_DIR"):
        path = Path(explicit or os.environ["LONGRANK_WHEELS_DIR"])
        return path if path.is_dir() else fail(f"wheels directory {path} does not exist")
    links = os.environ.get("PIP_FIND_LINKS", "").split()
    config = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                            check=False).stdout
    for value in re.findall(r"^[\w:]*\.find-links='([^']*)'", config, re.M):
        links += value.split()
    version = pinned_torch()
    for link in links:
        path = Path(link.removeprefix("file://"))
        if path.is_dir() and any(path.glob(f"torch-{version}+cpu-*.whl")):
            return path
    return None


def write_override(directory: Path, wheels: Path) -> Path:
    """A compose override that gives the image builds the "wheels" build context (JSON is YAML)."""
    services = {name: {"build": {"additional_contexts": {"wheels": str(wheels.resolve())}}} for name in APP_SERVICES}
    path = directory / "compose.wheels.yml"
    path.write_text(json.dumps({"services": services}, indent=2) + "\n")
    return path


@dataclass
class Stack:
    """The check's compose project: the command prefix, its environment and the published ports."""

    env: dict[str, str]
    override: Path | None = None

    def compose(self, *args: str, timeout_s: float = 600.0, capture: bool = False, check: bool = True) -> str:
        files = ["-f", str(COMPOSE_FILE)] + (["-f", str(self.override)] if self.override else [])
        argv = ["docker", "compose", "--project-name", PROJECT, "--project-directory", str(REPO), *files, *args]
        return _run(argv, env=self.env, capture=capture, timeout_s=timeout_s, check=check)

    def url(self, port_var: str) -> str:
        return f"http://{HOST}:{self.env[port_var]}"

    def container(self, service: str) -> str:
        cid = self.compose("ps", "--all", "--quiet", service, capture=True).strip()
        return cid.splitlines()[-1] if cid else fail(f"no container for service {service}")

    def log_lines(self, service: str, n: int) -> str:
        """The last ``n`` lines of a service's output without its progress bars (tqdm's carriage-return updates)."""
        raw = self.compose("logs", "--no-log-prefix", service, capture=True, check=False)
        lines = [ANSI.sub("", part).strip() for part in re.split(r"[\r\n]+", raw)]
        lines = [line for line in lines if line and not PROGRESS.search(line)]
        return "\n".join(f"   | {line}" for line in lines[-n:])

    def wait_healthy(self, service: str, timeout_s: float) -> None:
        cid = self.container(service)
        deadline = time.monotonic() + timeout_s
        state = ""
        while time.monotonic() < deadline:
            fmt = "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}"
            state = subprocess.run(["docker", "inspect", "--format", fmt, cid], capture_output=True, text=True,
                                   check=False).stdout.strip()
            if state.endswith(" healthy"):
                return
            if state.endswith("unhealthy") or state.split(" ")[0] in {"exited", "dead"}:
                break
            time.sleep(2.0)
        print(self.log_lines(service, 30))
        fail(f"{service} is not healthy (state: {state or 'unknown'})")


def _teardown(stack: Stack | None) -> list[str]:
    """`docker compose down -v` of the check's project; the kinds of objects still left afterwards."""
    if stack is None:
        return []
    stack.compose("--profile", "load", "--profile", "observe", "down", "--volumes", "--remove-orphans",
                  "--timeout", "20", check=False, timeout_s=300)
    label = f"label=com.docker.compose.project={PROJECT}"
    left = [kind for kind in ("container", "network", "volume")
            if subprocess.run(["docker", kind, "ls", *(["--all"] if kind == "container" else []), "--quiet",
                               "--filter", label], capture_output=True, text=True, check=False).stdout.strip()]
    print(f"   LEFT BEHIND: {', '.join(left)}" if left else "   no container, network or volume of the check is left")
    return left


def _free_ports() -> dict[str, str]:
    """A distinct free port on 127.0.0.1 for each published port."""
    ports: set[int] = set()
    while len(ports) < len(PORT_VARS):
        ports.add(free_port())
    return dict(zip(PORT_VARS, map(str, sorted(ports)), strict=True))


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_check(args: argparse.Namespace, report: Report) -> None:
    engine: Engine | None = None
    stack: Stack | None = None
    workdir = Path(tempfile.mkdtemp(prefix="longrank-compose-check-"))
    http = httpx.Client(timeout=30.0, trust_env=False)
    try:
        with report.step("engine", "a container engine that answers, with Compose v2"):
            engine = ensure_engine(REPO / "docker" / "install-engine.sh",
                                   REPO / "var" / "compose-check" / "dockerd.log", install=not args.no_install)
            print(f"   engine {engine.version}{' (started here; stopped at the end)' if engine.started_here else ''}")
        with report.step("bases", f"base images ({args.bases})"):
            # The check's stack uses its own Redis, whatever STORE_URL a user has set for theirs.
            env = {k: v for k, v in os.environ.items() if k != "STORE_URL"} | choose_bases(args.bases)
            for name in BASE_VARS:
                print(f"   {name}={env[name]}")
        with report.step("build", "docker compose build (docker/Dockerfile)"):
            wheels = find_wheels(args.wheels)
            override = write_override(workdir, wheels) if wheels else None
            if wheels is not None and "TORCH_INDEX_URL" not in os.environ:
                env["TORCH_INDEX_URL"] = ""  # the local wheel is the CPU build; no other index is needed
            print(f"   wheels context: {wheels or 'none'}; TORCH_INDEX_URL={env.get('TORCH_INDEX_URL', '(default)')}")
            env.update(_free_ports())
            env["LOCUST_USER_RPS"] = str(args.user_rps)
            stack = Stack(env=env, override=override)
            stack.compose("build", timeout_s=args.build_timeout)
        with report.step("up", "docker compose up -d (redis, bootstrap: data -> train -> ingest, ranker)"):
            print("   published on 127.0.0.1: " + ", ".join(f"{name}={env[name]}" for name in PORT_VARS))
            try:
                stack.compose("up", "--detach", timeout_s=args.up_timeout)
            finally:
                print(stack.log_lines("bootstrap", 12))
        with report.step("healthy", "the ranker's healthcheck passes"):
            stack.wait_healthy("ranker", 300)
        with report.step("rank", "POST /v1/rank on the published port"):
            rank(http, stack.url("RANKER_HOST_PORT"))
        event = {"user_id": "1", "item_id": 1500, "category_id": 5, "ts": int(time.time()), "action": 5,
                 "event_id": f"compose-check-{uuid.uuid4().hex}"}
        with report.step("event", "POST /v1/events and see it count"):
            length = post_event(http, stack.url("RANKER_HOST_PORT"), event)
        with report.step("restart", "recreate the Redis container on its volume, restart the ranker"):
            stack.compose("up", "--detach", "--force-recreate", "--no-deps", "redis")
            stack.wait_healthy("redis", 120)
            stack.compose("restart", "ranker")
            stack.wait_healthy("ranker", 300)
            event_still_there(http, stack.url("RANKER_HOST_PORT"), event, length)
        with report.step("load", f"profile load: Locust, {args.users} users x {args.user_rps} req/s, {args.seconds} s"):
            stack.compose("--profile", "load", "up", "--detach", "locust", timeout_s=300)
            locust_run(http, stack.url("LOCUST_HOST_PORT"), "http://ranker:8000", args.users, args.seconds)
            stack.compose("--profile", "load", "stop", "locust")
        if not args.no_observe:
            with report.step("observe", "profile observe: Prometheus scrapes the ranker"):
                stack.compose("--profile", "observe", "up", "--detach", "prometheus", timeout_s=300)
                prometheus_scrapes(http, stack.url("PROMETHEUS_HOST_PORT"), "longrank")
    except CheckFailed:
        if stack is not None:
            stack.compose("--profile", "load", "--profile", "observe", "ps", "--all", check=False)
        raise
    finally:
        http.close()
        with report.step("down", "docker compose down -v (containers, networks, volumes of the check)"):
            report.left_behind = _teardown(stack)
            shutil.rmtree(workdir, ignore_errors=True)
            if engine is not None and engine.started_here and not args.keep_engine:
                print("   stopping the dockerd started here")
                engine.stop()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="compose-check", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--bases", choices=("auto", "official", "local"), default="auto",
                        help="official images, docker/local-bases.sh's stand-ins, or official when they can be had")
    parser.add_argument("--wheels", help="a directory of wheels for the build (default: one of pip's find-links "
                                         "holding the pinned CPU torch wheel, or LONGRANK_WHEELS_DIR)")
    parser.add_argument("--users", type=int, default=2, help="Locust users (default 2)")
    parser.add_argument("--user-rps", type=float, default=5.0, help="requests per second per Locust user (default 5)")
    parser.add_argument("--seconds", type=float, default=15.0, help="Locust run time (default 15)")
    parser.add_argument("--build-timeout", type=float, default=1800.0, help="seconds (default 1800)")
    parser.add_argument("--up-timeout", type=float, default=1200.0, help="seconds (default 1200)")
    parser.add_argument("--no-observe", action="store_true", help="skip the Prometheus step")
    parser.add_argument("--no-install", action="store_true", help="never install a container engine")
    parser.add_argument("--keep-engine", action="store_true", help="leave a dockerd started here running")
    parser.add_argument("--skip-without-engine", action="store_true",
                        help="exit 0 with a message (not 77) when no container engine can run here")
    args = parser.parse_args(argv)
    if args.users < 1 or args.user_rps <= 0 or args.users * args.user_rps > MAX_LOAD_RPS:
        parser.error(f"--users x --user-rps must be within (0, {MAX_LOAD_RPS:.0f}] req/s")
    if not 0 < args.seconds <= MAX_LOAD_SECONDS:
        parser.error(f"--seconds must be within (0, {MAX_LOAD_SECONDS:.0f}]")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    report = Report()
    try:
        run_check(args, report)
    except EngineUnavailable as exc:
        print(report.summary())
        print(f"\ncompose-check: SKIPPED: no container engine can run here: {exc}", flush=True)
        return 0 if args.skip_without_engine else EXIT_NO_ENGINE
    except (CheckFailed, KeyboardInterrupt) as exc:
        print(report.summary())
        print(f"\ncompose-check: FAILED: {exc}", flush=True)
        return 1
    except Exception:  # an unexpected answer (the teardown has run): the traceback says where
        traceback.print_exc()
        print(report.summary())
        print("\ncompose-check: FAILED: unexpected error (traceback above)", flush=True)
        return 1
    print(report.summary())
    if report.left_behind:
        print(f"\ncompose-check: FAILED: the teardown left {', '.join(report.left_behind)} of {PROJECT}", flush=True)
        return 1
    print(f"\ncompose-check: all {len(report.steps)} steps passed", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
