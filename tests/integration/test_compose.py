"""docker-compose.yml, docker/ and .dockerignore checked without a container engine (`make compose-check` runs the
stack for real): the file parses (and `docker compose config` accepts it where Compose v2 is installed); every build
context, Dockerfile, build argument and bind-mounted file exists; every LONGRANK_* variable it sets is one the
program reads, with a value the settings accept; the base images can be replaced by variables whose defaults are the
official images, and docker/local-bases.sh sets exactly those variables; healthchecks and depends_on conditions are
in place; every port is published on 127.0.0.1 only and none twice; the build context holds every package of
pyproject.toml; the Dockerfile, redis.conf, prometheus.yml and the scripts say what the stack relies on; the
compose check's load stays within its bounds."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from serving.settings import ENV_PREFIX, Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
APP_SERVICES = ("bootstrap", "ranker")  # services that run longrank itself
OFFICIAL = {"PYTHON_IMAGE": "python:3.11-slim", "REDIS_IMAGE": "redis:7.2", "PROMETHEUS_IMAGE": "prom/prometheus:"}
VARIABLE = re.compile(r"\$\{(\w+)(:?-)([^}]*)\}")


def defaults(value: Any) -> str:
    """A compose value with each ${VAR:-default} / ${VAR-default} replaced by its default (no variable set)."""
    return VARIABLE.sub(lambda m: m.group(3), str(value))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of each bind mount (sources starting with . or /)."""
    out = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                out.append((volume["source"], volume["target"]))
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            out.append((source, target))
    return out


def named_volumes(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """volume name -> (container path, read-only) of each named volume."""
    out = {}
    for volume in service.get("volumes") or []:
        parts = str(volume).split(":")
        if not parts[0].startswith((".", "/")):
            out[parts[0]] = (parts[1], parts[2:] == ["ro"])
    return out


def host_ports(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of each published port, with the variables at their defaults."""
    out = []
    for port in service.get("ports") or []:
        parts = defaults(port).split(":")
        ip, host, container = ("0.0.0.0", *parts) if len(parts) == 2 else parts
        out.append((ip, int(host), int(container.split("/")[0])))
    return out


def test_the_services_and_profiles(compose: dict[str, Any]) -> None:
    s = services(compose)
    assert {"redis", "bootstrap", "ranker", "locust", "prometheus"} <= set(s)
    assert s["locust"]["profiles"] == ["load"]
    assert s["prometheus"]["profiles"] == ["observe"]
    for name in ("redis", "bootstrap", "ranker"):
        assert not s[name].get("profiles"), f"{name} must start with a plain `docker compose up`"
    assert s["bootstrap"].get("restart") == "no"  # one-shot


def test_compose_v2_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("docker compose (v2) is not installed")
    done = subprocess.run([docker, "compose", "-f", str(COMPOSE), "--profile", "load", "--profile", "observe",
                           "config", "--quiet"], capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr


def test_base_images_are_variables_defaulting_to_the_official_images(compose: dict[str, Any]) -> None:
    s = services(compose)
    found = {}
    for value in (s["redis"]["image"], s["prometheus"]["image"], s["ranker"]["build"]["args"]["BASE_IMAGE"]):
        match = VARIABLE.fullmatch(value)
        assert match and match.group(2) == ":-", f"{value}: not ${{VAR:-official image}}"
        found[match.group(1)] = match.group(3)
    assert set(found) == set(OFFICIAL)
    for name, official in OFFICIAL.items():
        assert found[name].startswith(official), (name, found[name])
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", found["PROMETHEUS_IMAGE"])  # a pinned release
    script = (ROOT / "docker" / "local-bases.sh").read_text()
    assert set(re.findall(r'^echo "export (\w+)=', script, re.M)) == set(OFFICIAL), "local-bases.sh sets others"


def test_build_contexts_dockerfiles_build_args_and_mounted_files_exist(compose: dict[str, Any]) -> None:
    declared_args = set(re.findall(r"^ARG\s+(\w+)", DOCKERFILE.read_text(), re.M))
    for name, service in services(compose).items():
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            assert context.is_dir(), f"{name}: build context {context} is missing"
            dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
            unknown = set(build.get("args") or {}) - declared_args
            assert not unknown, f"{name}: build args {unknown} are not ARGs of {dockerfile.name}"
        else:
            assert "image" in service, f"{name}: neither build nor image"
        for source, target in bind_mounts(service):
            assert (ROOT / source).exists(), f"{name}: mounted {source} does not exist"
            assert target.startswith("/"), f"{name}: mount target {target} must be absolute"
    declared = set(compose.get("volumes") or {})
    for name, service in services(compose).items():
        for volume in named_volumes(service):
            assert volume in declared, f"{name}: named volume {volume} is not declared under volumes:"


def test_every_longrank_variable_is_a_real_setting_with_a_valid_value(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = {name.lower() for name in Settings.model_fields}
    locustfile = (ROOT / "loadtest" / "locustfile.py").read_text()
    seen = 0
    for name, service in services(compose).items():
        env = {k: v for k, v in environment(service).items() if k.upper().startswith(ENV_PREFIX)}
        for key in env:
            if key.upper().startswith(f"{ENV_PREFIX}LOAD_"):  # the load generator's own knobs, read by Locust
                assert f'"{key}"' in locustfile, f"{name}: {key} is not read by loadtest/locustfile.py"
                continue
            assert key[len(ENV_PREFIX):].lower() in fields, f"{name}: {key} is not a setting of serving/settings.py"
            seen += 1
        if name in APP_SERVICES:
            for key in list(Settings.model_fields):
                monkeypatch.delenv(f"{ENV_PREFIX}{key.upper()}", raising=False)
            for key, value in env.items():
                monkeypatch.setenv(key, defaults(value))
            try:
                settings = load_settings()
            except SettingsError as exc:
                pytest.fail(f"{name}: its environment is refused: {exc}")
            assert settings.store_url.startswith("redis://redis:"), f"{name}: must use the compose redis"
            assert 4 in settings.actions and 5 in settings.actions, f"{name}: MovieLens ratings 1..5 are actions"
    assert seen > 0


def test_healthchecks_and_start_order(compose: dict[str, Any]) -> None:
    s = services(compose)
    assert s["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    assert "/readyz" in " ".join(s["ranker"]["healthcheck"]["test"])
    assert s["bootstrap"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert s["ranker"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert s["ranker"]["depends_on"]["bootstrap"]["condition"] == "service_completed_successfully"
    dockerfile_health = "HEALTHCHECK" in DOCKERFILE.read_text()
    for name, service in s.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions, not a bare list"
        for target, rule in depends.items():
            assert target in s, f"{name} depends on unknown service {target}"
            condition = rule.get("condition")
            assert condition in {"service_healthy", "service_completed_successfully", "service_started"}
            if condition == "service_healthy":
                built = "build" in s[target] and dockerfile_health
                assert "healthcheck" in s[target] or built, f"{name} waits for {target}, which has no healthcheck"


def test_ports_are_published_on_loopback_only_never_twice_and_match(compose: dict[str, Any]) -> None:
    published: dict[int, str] = {}
    variables: dict[str, str] = {}
    for name, service in services(compose).items():
        for raw in service.get("ports") or []:
            for match in VARIABLE.finditer(str(raw)):
                assert match.group(1) not in variables, f"{name} and {variables.get(match.group(1))} share a variable"
                variables[match.group(1)] = name
        for ip, host, _ in host_ports(service):
            assert ip == "127.0.0.1", f"{name}: port {host} is published on {ip}, not on loopback only"
            assert host not in published, f"host port {host}: {published.get(host)} and {name}"
            published[host] = name
    ranker = services(compose)["ranker"]
    container_ports = {c for _, _, c in host_ports(ranker)}
    assert int(environment(ranker)["LONGRANK_PORT"]) in container_ports
    assert re.search(r"^EXPOSE\s+8000\b", DOCKERFILE.read_text(), re.M)
    from stack.compose_check import PORT_VARS

    assert set(PORT_VARS) == set(variables), "compose-check must move every published port"


def test_the_bootstrap_is_longrank_demo_writing_what_the_ranker_reads(compose: dict[str, Any]) -> None:
    s = services(compose)
    boot, ranker = s["bootstrap"], s["ranker"]
    command = boot["command"]
    assert command[:3] == ["longrank", "demo", "--if-missing"], "the bootstrap must skip the steps already done"
    demo_dir = command[command.index("--dir") + 1]
    boot_volumes, ranker_volumes = named_volumes(boot), named_volumes(ranker)
    shared = [v for v, (path, ro) in boot_volumes.items() if path == demo_dir and not ro]
    assert shared, f"the bootstrap's --dir {demo_dir} is not a writable named volume"
    assert ranker_volumes.get(shared[0]) == (demo_dir, True), "the ranker must mount the demo volume read-only"
    # cli/demo.py writes the artifact to DIR/artifact; the ranker serves it.
    assert environment(ranker)["LONGRANK_ARTIFACT"] == f"{demo_dir}/artifact"
    assert environment(ranker)["LONGRANK_STORE_URL"] == environment(boot)["LONGRANK_STORE_URL"]
    assert f"mkdir -p {demo_dir}" in DOCKERFILE.read_text(), "the image must own the volume's mount point"


def test_dockerfile_takes_its_base_pins_cpu_torch_runs_unprivileged_and_checks_readiness() -> None:
    text = DOCKERFILE.read_text()
    first_from = text.index("\nFROM ")
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text[:first_from], re.M), "ARG BASE_IMAGE before FROM"
    froms = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M)
    assert ("scratch", "wheels") in froms, "an empty 'wheels' stage that --build-context wheels=DIR replaces"
    assert froms[-1][0] == "${BASE_IMAGE}"
    assert re.search(r"^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cpu$", text, re.M)
    assert "--mount=type=bind,from=wheels,target=/wheels" in text and "--find-links /wheels" in text
    assert "torch.version.cuda is None" in text, "a CUDA build of torch must fail the build"
    installs = re.findall(r"pip install ([^\n]*)", text)
    assert installs and all("-c constraints.txt" in line for line in installs), installs
    assert "recbole==1.2.1" in text and "--no-deps recbole" in text
    assert "python3 -m venv /opt/venv" in text and "PATH=/opt/venv/bin:$PATH" in text  # Debian's python: PEP 668
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in {"root", "0"}
    assert re.search(r"^HEALTHCHECK .*(?:\n.*)*?/readyz", text, re.M)
    assert re.search(r'^CMD \["longrank", "serve", "--host", "0\.0\.0\.0"\]', text, re.M)
    for source in re.findall(r"^COPY\s+(?!--)(.+?)\s+\S+$", text, re.M):
        for item in source.split():
            assert (ROOT / item).exists(), f"COPY {item}: missing"


def test_the_build_context_holds_every_package_and_nothing_local() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*", ".dockerignore must start by excluding everything (no .venv, var/ or caches)"
    kept = {p[1:] for p in patterns if p.startswith("!")}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    missing = (packages | {"pyproject.toml", "constraints.txt", project["project"]["readme"]}) - kept
    assert not missing, f".dockerignore leaves out {missing}: the image would lack them"
    for item in kept:
        assert (ROOT / item).exists(), f".dockerignore keeps {item}, which does not exist"
    assert "**/__pycache__" in patterns


@pytest.mark.parametrize("script", ["local-bases.sh", "install-engine.sh"])
def test_the_scripts_are_valid_bash(script: str) -> None:
    path = ROOT / "docker" / script
    assert path.read_text().startswith("#!/usr/bin/env bash\n")
    if shutil.which("bash"):
        done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr


def test_local_bases_give_the_machine_ca_bundle_to_pip_and_the_system() -> None:
    text = (ROOT / "docker" / "local-bases.sh").read_text()
    assert 'CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"' in text
    assert 'cp "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"' in text
    assert "PIP_CERT=/etc/ssl/certs/ca-certificates.crt" in text
    assert "debootstrap --variant=minbase" in text


def test_the_compose_check_reads_the_compose_defaults_and_bounds_its_load() -> None:
    from stack.compose_check import MAX_LOAD_RPS, MAX_LOAD_SECONDS, _official_defaults, parse_args

    found = _official_defaults()  # what the check pulls before it falls back to docker/local-bases.sh
    assert set(found) == set(OFFICIAL) and all(found[n].startswith(OFFICIAL[n]) for n in OFFICIAL), found
    assert MAX_LOAD_RPS <= 20 and MAX_LOAD_SECONDS <= 30
    args = parse_args([])
    assert args.users * args.user_rps <= MAX_LOAD_RPS and args.seconds <= MAX_LOAD_SECONDS
    for bad in (["--users", "5", "--user-rps", "5"], ["--seconds", "31"], ["--user-rps", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_redis_conf_is_durable_and_bounded() -> None:
    conf = {}
    for line in (ROOT / "docker" / "redis.conf").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            conf[key] = value.strip()
    assert conf["appendonly"] == "yes"
    assert conf["appendfsync"] == "everysec"
    assert conf["maxmemory-policy"] == "noeviction"
    assert re.fullmatch(r"\d+[kmg]?b?", conf["maxmemory"], re.I) and not conf["maxmemory"].startswith("0")


def test_redis_server_accepts_the_conf(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    from stack.redis_procs import command, start_server

    server = start_server(tmp_path, conf=ROOT / "docker" / "redis.conf", args=("--bind", "127.0.0.1"))
    try:
        assert command(server.port, "CONFIG", "GET", "appendonly").split(b"\r\n")[-2] == b"yes"
    finally:
        server.stop()


def test_prometheus_scrapes_the_ranker_metrics(compose: dict[str, Any]) -> None:
    prom = yaml.safe_load((ROOT / "docker" / "prometheus.yml").read_text())
    jobs = prom["scrape_configs"]
    targets = [t for job in jobs for group in job["static_configs"] for t in group["targets"]]
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in jobs)
    ranker_ports = {c for _, _, c in host_ports(services(compose)["ranker"])}
    assert any(t.split(":")[0] == "ranker" and int(t.split(":")[1]) in ranker_ports for t in targets), targets
    assert "longrank" in {job["job_name"] for job in jobs}, 'compose-check queries up{job="longrank"}'
    mounts = {t for _, t in bind_mounts(services(compose)["prometheus"])}
    assert "/etc/prometheus/prometheus.yml" in mounts
