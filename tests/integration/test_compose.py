"""docker-compose.yml and docker/ checked statically (no container engine runs here): the file parses; every build
context, Dockerfile and bind-mounted file exists; every LONGRANK_* variable it sets is one the program reads, with a
value the settings accept; healthchecks and depends_on conditions are in place; no host port is published twice;
the Dockerfile, redis.conf, prometheus.yml and the bootstrap script say what the stack relies on."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from serving.settings import ENV_PREFIX, Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
APP_SERVICES = ("bootstrap", "ranker")  # services that run longrank itself


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


def host_ports(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of each published port."""
    out = []
    for port in service.get("ports") or []:
        parts = str(port).split(":")
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


def test_build_contexts_dockerfiles_and_mounted_files_exist(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            assert context.is_dir(), f"{name}: build context {context} is missing"
            dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
        else:
            assert "image" in service, f"{name}: neither build nor image"
        for source, target in bind_mounts(service):
            assert (ROOT / source).exists(), f"{name}: mounted {source} does not exist"
            assert target.startswith("/"), f"{name}: mount target {target} must be absolute"
    declared = set(compose.get("volumes") or {})
    for name, service in services(compose).items():
        for volume in service.get("volumes") or []:
            source = str(volume).split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: named volume {source} is not declared under volumes:"


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
                monkeypatch.setenv(key, value)
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
    dockerfile_health = "HEALTHCHECK" in (ROOT / "docker" / "Dockerfile").read_text()
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


def test_no_host_port_collides_and_ports_match(compose: dict[str, Any]) -> None:
    published: dict[int, str] = {}
    for name, service in services(compose).items():
        for _, host, _ in host_ports(service):
            assert host not in published, f"host port {host}: {published.get(host)} and {name}"
            published[host] = name
    ranker = services(compose)["ranker"]
    container_ports = {c for _, _, c in host_ports(ranker)}
    assert int(environment(ranker)["LONGRANK_PORT"]) in container_ports
    assert re.search(r"^EXPOSE\s+8000\b", (ROOT / "docker" / "Dockerfile").read_text(), re.M)


def test_the_bootstrap_command_mounts_its_script_and_the_script_is_valid_sh(compose: dict[str, Any]) -> None:
    boot = services(compose)["bootstrap"]
    targets = {target: source for source, target in bind_mounts(boot)}
    script_path = boot["command"][-1]
    assert script_path in targets, "the bootstrap command runs a file that is not mounted"
    script = ROOT / targets[script_path]
    text = script.read_text()
    for step in ("longrank data ml100k", "longrank train", "--model sim_can", "longrank ingest"):
        assert step in text
    if shutil.which("sh"):
        assert subprocess.run(["sh", "-n", str(script)], capture_output=True, check=False).returncode == 0
    ranker_env = environment(services(compose)["ranker"])
    assert ranker_env["LONGRANK_ARTIFACT"] == environment(boot)["LONGRANK_ARTIFACT"]


def test_dockerfile_is_slim_non_root_and_checks_readiness() -> None:
    text = (ROOT / "docker" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in {"root", "0"}
    health = re.search(r"^HEALTHCHECK .*(?:\n.*)*?/readyz", text, re.M)
    assert health is not None
    assert "-c constraints.txt" in text and "download.pytorch.org/whl/cpu" in text
    assert "recbole==1.2.1" in text and "--no-deps" in text
    assert re.search(r'^CMD \["longrank", "serve", "--host", "0\.0\.0\.0"\]', text, re.M)
    for source in re.findall(r"^COPY\s+(.+?)\s+\S+$", text, re.M):
        for item in source.split():
            assert (ROOT / item).exists(), f"COPY {item}: missing"


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
    mounts = {t for _, t in bind_mounts(services(compose)["prometheus"])}
    assert "/etc/prometheus/prometheus.yml" in mounts
