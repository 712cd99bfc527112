"""docker-compose.yml, the Dockerfile and deploy/ agree with each other and with the settings.

No broker and no Docker engine: the files are parsed, and every ``STREAMDRIFT_*``
variable they set is resolved against ``streamdrift.runtime.settings.Settings``. A
misspelt top-level name (``STREAMDRIFT_METRICS_PORTT``) would otherwise be
ignored silently by the settings loader and the worker would start with the
default, so the name check is what catches it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from streamdrift.core.errors import ConfigError as UnknownSetting
from streamdrift.runtime.settings import ENV_PREFIX, Settings, load_settings, setting_path

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SERVICES = {"kafka", "topics", "worker", "demo", "prometheus", "grafana"}
APP_SERVICES = ("topics", "worker", "demo")


# --- helpers -------------------------------------------------------------------------------


def _compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _service(name: str) -> dict:
    return _compose()["services"][name]


def _environment(service: dict) -> dict[str, str]:
    """A service's environment as strings (mapping or ``KEY=VALUE`` list form)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for k, v in env.items()}


def _host_ports(spec: str) -> range:
    """``"9108"`` or ``"9108-9117"`` as a range of host ports."""
    first, _, last = spec.partition("-")
    return range(int(first), int(last or first) + 1)


def _published(service: dict) -> list[tuple[range, int]]:
    """Published ``(host ports, container port)``, short or long syntax, a host address dropped."""
    published = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            published.append((_host_ports(str(port["published"])), int(port["target"])))
            continue
        spec = str(port).split("/", 1)[0].split(":")
        if len(spec) >= 2:
            published.append((_host_ports(spec[-2]), int(spec[-1])))
    return published


def _ports(service: dict) -> set[tuple[int, int]]:
    """Published ``(host, container)`` ports of fixed host ports (not of a range)."""
    return {(hosts[0], container) for hosts, container in _published(service) if len(hosts) == 1}


def _mounts(service: dict) -> dict[str, str]:
    """Volume mounts as ``{target: source}`` (short or long syntax)."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume.get("source", "")
        else:
            source, target = str(volume).split(":")[:2]
            mounts[target] = source
    return mounts


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        if full:
            keyword, _, args = full.partition(" ")
            instructions.append((keyword.upper(), args.strip()))
    return instructions


def _dockerfile_env() -> dict[str, str]:
    env = {}
    for keyword, args in _dockerfile_instructions():
        if keyword == "ENV":
            for token in shlex.split(args):
                name, sep, value = token.partition("=")
                assert sep, f"Dockerfile: use ENV NAME=VALUE, not {args!r}"
                env[name] = value
    return env


def _settings_for(service: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings the service's container starts with: image ENV, then compose environment."""
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    env = {**_dockerfile_env(), **_environment(_service(service))}
    for name, value in env.items():
        if name.startswith(ENV_PREFIX):
            monkeypatch.setenv(name, value)
    return load_settings()


# --- the name check itself ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, path",
    [
        ("STREAMDRIFT_KAFKA__BOOTSTRAP_SERVERS", ("kafka", "bootstrap_servers")),
        ("streamdrift_kafka__bootstrap_servers", ("kafka", "bootstrap_servers")),
        ("STREAMDRIFT_TOPICS__DEAD_LETTER", ("topics", "dead_letter")),
        ("STREAMDRIFT_METRICS_PORT", ("metrics_port",)),
        ("STREAMDRIFT_MONITOR__WINDOW_SIZE", ("monitor", "window_size")),
        ("STREAMDRIFT_KAFKA__EXTRA__client.rack", ("kafka", "extra", "client.rack")),
    ],
)
def test_setting_path_resolves_real_settings(name: str, path: tuple[str, ...]) -> None:
    assert setting_path(name) == path


@pytest.mark.parametrize(
    "name",
    [
        "STREAMDRIFT_KAFKA__BOOTSTRAP_SERVER",  # singular
        "STREAMDRIFT_METRICS__PORT",  # metrics_* are top-level, not a section
        "STREAMDRIFT_METRICS_PORTT",
        "STREAMDRIFT_KAFKA_BOOTSTRAP_SERVERS",  # one underscore where "__" is needed
        "STREAMDRIFT_BATCH_SIZE__MAX",  # batch_size has no sub-settings
        "STREAMDRIFT_KAFKA__EXTRA__A__B",
        "STREAMDRIFT_",
        "KAFKA_BOOTSTRAP_SERVERS",
    ],
)
def test_setting_path_rejects_bad_names(name: str) -> None:
    with pytest.raises(UnknownSetting):
        setting_path(name)


def test_loader_refuses_unknown_names_instead_of_ignoring_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo must not start a worker on the default port, silently."""
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STREAMDRIFT_METRICS_PORTT", "9999")
    with pytest.raises(UnknownSetting, match="STREAMDRIFT_METRICS_PORTT.*'metrics_portt' is not a setting"):
        load_settings()


# --- compose ---------------------------------------------------------------------------------


def test_compose_has_the_six_services_and_no_version_key() -> None:
    compose = _compose()
    assert "version" not in compose
    assert set(compose["services"]) == SERVICES


def test_kafka_is_the_official_image_in_kraft_mode() -> None:
    kafka = _service("kafka")
    assert kafka["image"].split(":")[0] == "apache/kafka"
    env = _environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    for name in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
    ):
        assert env[name] == "1", name
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert "PLAINTEXT://kafka:9092" in advertised and "EXTERNAL://localhost:29092" in advertised
    assert "zookeeper" not in COMPOSE_FILE.read_text().lower()
    assert "kafka-broker-api-versions.sh --bootstrap-server kafka:9092" in " ".join(kafka["healthcheck"]["test"])


@pytest.mark.parametrize(
    "service, host, container",
    [
        ("prometheus", 9090, 9090),
        ("grafana", 3000, 3000),
        ("kafka", 29092, 29092),
    ],
)
def test_ports_are_published(service: str, host: int, container: int) -> None:
    assert (host, container) in _ports(_service(service))


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_services_build_from_the_repo_dockerfile(service: str) -> None:
    build = _service(service)["build"]
    context, dockerfile = (
        (build, "Dockerfile")
        if isinstance(build, str)
        else (build.get("context", "."), build.get("dockerfile", "Dockerfile"))
    )
    assert (COMPOSE_FILE.parent / context).resolve() == ROOT
    assert (ROOT / context / dockerfile).resolve() == DOCKERFILE


def test_app_commands_and_start_order() -> None:
    compose = _compose()["services"]
    assert compose["topics"]["command"] == ["topics", "create"]
    assert compose["worker"]["command"] == ["worker"]
    assert compose["demo"]["command"] == ["demo"]
    assert compose["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert compose["worker"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert compose["demo"]["depends_on"]["worker"]["condition"] == "service_healthy"
    # What a service_healthy condition waits on must have a healthcheck.
    assert compose["kafka"]["healthcheck"] and compose["worker"]["healthcheck"]


def test_shared_env_is_written_once_with_an_anchor() -> None:
    text = COMPOSE_FILE.read_text()
    assert "x-streamdrift-env: &" in text
    assert text.count("STREAMDRIFT_KAFKA__BOOTSTRAP_SERVERS") == 1
    shared = _compose()["x-streamdrift-env"]
    for service in APP_SERVICES:
        env = _environment(_service(service))
        assert {k: env.get(k) for k in shared} == {k: str(v) for k, v in shared.items()}, service


def _all_streamdrift_env_names() -> list[tuple[str, str]]:
    names = [("Dockerfile", name) for name in _dockerfile_env()]
    compose = _compose()
    for service_name, service in compose["services"].items():
        names += [(service_name, name) for name in _environment(service)]
    names += [("x-streamdrift-env", name) for name in compose.get("x-streamdrift-env", {})]
    return [(where, name) for where, name in names if name.upper().startswith("STREAMDRIFT")]


def test_every_streamdrift_variable_names_a_real_setting() -> None:
    found = _all_streamdrift_env_names()
    assert found, "no STREAMDRIFT_ variables found: the check would pass vacuously"
    problems = []
    for where, name in found:
        try:
            setting_path(name)
        except UnknownSetting as exc:
            problems.append(f"{where}: {exc}")
    assert not problems, "\n".join(problems)


def test_worker_settings_validate_with_the_compose_values(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings_for("worker", monkeypatch)
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.metrics_host == "0.0.0.0"
    assert settings.metrics_port == 9108
    assert settings.snapshot_dir == Path("/var/lib/streamdrift/snapshots")
    worker = _service("worker")
    assert f"localhost:{settings.metrics_port}/readyz" in " ".join(worker["healthcheck"]["test"])


def test_the_worker_has_the_retrain_budget_of_make_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compose stack runs the same demo as `make demo`, whose README output and Grafana budget panel need a
    retrain budget: the compose worker's is scripts/demo's."""
    demo = re.search(r"^one_an_hour='(.*)'$", (ROOT / "scripts" / "demo").read_text(), re.MULTILINE)
    assert demo is not None, "scripts/demo no longer sets one_an_hour"
    budget = _settings_for("worker", monkeypatch).monitor.retrain_budget
    assert budget is not None and budget.model_dump() == {**json.loads(demo.group(1)), "min_interval_s": 0.0}


def test_the_worker_scales_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """`docker compose up --scale worker=3`: nothing of one replica may clash with another's, and the state
    each needs to take over a partition is in the state topic, which the topics service creates."""
    worker = _service("worker")
    settings = _settings_for("worker", monkeypatch)
    assert "container_name" not in worker and "hostname" not in worker  # both would be the same for every replica
    # the metrics port: no fixed host port (a second replica could not bind it), a range of them at most
    published = [(hosts, container) for hosts, container in _published(worker) if container == settings.metrics_port]
    assert published == [] or all(len(hosts) >= 3 for hosts, _ in published), published
    assert not _ports(worker)
    # no volume shared between replicas: the state topic is the store, snapshot_dir only a cache of it
    named = set(_compose().get("volumes") or {})
    assert not [source for source in _mounts(worker).values() if source in named]
    assert settings.state_store == "kafka"
    topics = _settings_for("topics", monkeypatch)
    assert topics.state_store == "kafka" and topics.topics.state == settings.topics.state  # `topics create` makes it


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_app_service_talks_to_the_same_broker_and_topics(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings_for(service, monkeypatch)
    worker = _settings_for("worker", monkeypatch)
    assert settings.kafka == worker.kafka
    assert settings.topics == worker.topics


def test_prometheus_scrapes_the_worker() -> None:
    mounts = _mounts(_service("prometheus"))
    source = mounts["/etc/prometheus/prometheus.yml"]
    config_file = COMPOSE_FILE.parent / source
    assert config_file.resolve() == ROOT / "deploy" / "prometheus" / "prometheus.yml"
    assert config_file.is_file()
    config = yaml.safe_load(config_file.read_text())
    # Rule files are relative to the config file, so each must be mounted beside it.
    assert config["rule_files"] == ["rules.yml"]
    for name in config["rule_files"]:
        rules = COMPOSE_FILE.parent / mounts[f"/etc/prometheus/{name}"]
        assert rules.resolve() == ROOT / "deploy" / "prometheus" / name
        assert rules.is_file()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    # every replica of the worker service, found by the service's name (one A record per container)
    assert "static_configs" not in jobs["streamdrift"]
    assert jobs["streamdrift"]["dns_sd_configs"] == [
        {"names": ["worker"], "type": "A", "port": 9108, "refresh_interval": "5s"}
    ]
    assert jobs["streamdrift"].get("scrape_interval", config.get("global", {}).get("scrape_interval")) == "5s"


def test_grafana_provisions_prometheus_as_default_datasource() -> None:
    grafana = _service("grafana")
    env = _environment(grafana)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    provisioning = COMPOSE_FILE.parent / _mounts(grafana)["/etc/grafana/provisioning"]
    assert provisioning.resolve() == ROOT / "deploy" / "grafana" / "provisioning"
    files = sorted((provisioning / "datasources").glob("*.y*ml"))
    assert files
    datasources = [ds for f in files for ds in yaml.safe_load(f.read_text())["datasources"]]
    default = [ds for ds in datasources if ds.get("isDefault")]
    assert len(default) == 1
    assert default[0]["type"] == "prometheus" and default[0]["url"] == "http://prometheus:9090"


def test_grafana_provisions_the_dashboard_from_the_mounted_folder() -> None:
    grafana = _service("grafana")
    mounts = _mounts(grafana)
    provisioning = COMPOSE_FILE.parent / mounts["/etc/grafana/provisioning"]
    providers = [
        p
        for f in sorted((provisioning / "dashboards").glob("*.y*ml"))
        for p in yaml.safe_load(f.read_text())["providers"]
    ]
    assert [p["type"] for p in providers] == ["file"]
    folder = COMPOSE_FILE.parent / mounts[providers[0]["options"]["path"]]
    assert folder.resolve() == ROOT / "deploy" / "grafana" / "dashboards"
    assert (folder / "streamdrift.json").is_file()


# --- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_runs_streamdrift_as_non_root() -> None:
    instructions = _dockerfile_instructions()
    last = {keyword: args for keyword, args in instructions}
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith("python:3.11-slim")
    assert yaml.safe_load(last["ENTRYPOINT"]) == ["streamdrift"]
    assert yaml.safe_load(last["CMD"]) == ["worker"]
    assert last["USER"] not in ("root", "0", "0:0")
    assert "9108" in last["EXPOSE"].split()
    # The entrypoint is the console script the package installs.
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "streamdrift" in scripts


def test_dockerignore_keeps_local_state_out_but_not_the_sources() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".cache", ".streamdrift"} <= ignored
    assert not ignored & {"src", "pyproject.toml", "Dockerfile", "*"}
