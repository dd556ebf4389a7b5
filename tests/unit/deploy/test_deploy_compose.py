"""deploy/compose.yaml: services, images, settings, ports and references."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


CARTWHEEL_SERVICES = {"hotpath", "catalog", "trainer", "feedback", "api"}
# The variable that sets the /metrics port of each service, and the job that
# scrapes it in prometheus.yml.
METRICS_PORT_VARIABLES = {
    "hotpath": "CARTWHEEL_HOTPATH_METRICS_PORT",
    "catalog": "CARTWHEEL_FEATURES_METRICS_PORT",
    "trainer": "CARTWHEEL_TRAINER_METRICS_PORT",
    "feedback": "CARTWHEEL_FEEDBACK_METRICS_PORT",
    "api": "CARTWHEEL_API_PORT",
}


def environment(service: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (service.get("environment") or {}).items()}


def test_compose_runs_kafka_in_kraft_mode(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]

    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert "zookeeper" not in compose["services"]


def test_compose_redis_requires_password_used_by_services(
    compose: dict[str, Any],
) -> None:
    command = compose["services"]["redis"]["command"]
    password = command[command.index("--requirepass") + 1]

    for name in CARTWHEEL_SERVICES:
        url = environment(compose["services"][name])["CARTWHEEL_REDIS_URL"]
        assert f":{password}@redis:6379" in url, name


def test_compose_has_every_component(compose: dict[str, Any]) -> None:
    expected = CARTWHEEL_SERVICES | {
        "kafka",
        "redis",
        "topics",
        "prometheus",
        "grafana",
    }

    assert expected <= set(compose["services"])


def test_compose_cartwheel_services_share_one_built_image(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    images = {services[name]["image"] for name in CARTWHEEL_SERVICES | {"topics"}}
    dockerfiles = {
        services[name]["build"]["dockerfile"]
        for name in CARTWHEEL_SERVICES | {"topics"}
    }

    assert len(images) == 1
    assert dockerfiles == {"deploy/Dockerfile"}
    assert (DEPLOY.parent / "deploy" / "Dockerfile").is_file()


def test_compose_topics_service_creates_topics_before_services(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]

    assert services["topics"]["command"] == ["cartwheel", "topics", "create"]
    for name in CARTWHEEL_SERVICES:
        condition = services[name]["depends_on"]["topics"]["condition"]
        assert condition == "service_completed_successfully", name


def test_compose_variables_exist_in_settings(
    compose: dict[str, Any], known_variables: set[str]
) -> None:
    unknown = {
        f"{name}: {variable}"
        for name, service in compose["services"].items()
        for variable in environment(service)
        if variable.startswith("CARTWHEEL_") and variable not in known_variables
    }

    assert unknown == set()


def test_compose_commands_name_runnable_modules(compose: dict[str, Any]) -> None:
    for name in CARTWHEEL_SERVICES:
        command = compose["services"][name]["command"]
        assert command[:2] == ["python", "-m"], name
        assert importlib.util.find_spec(f"{command[2]}.__main__") is not None, name


def test_compose_metrics_bind_all_interfaces(compose: dict[str, Any]) -> None:
    for name in CARTWHEEL_SERVICES:
        variables = environment(compose["services"][name])
        host_variable = METRICS_PORT_VARIABLES[name].replace("_PORT", "_HOST")
        assert variables[host_variable] == "0.0.0.0", name


def test_prometheus_targets_match_compose_ports(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"][0]
        for job in config["scrape_configs"]
    }

    for name, variable in METRICS_PORT_VARIABLES.items():
        port = environment(compose["services"][name])[variable]
        assert targets[f"cartwheel-{name}"] == f"{name}:{port}"


def test_compose_references_exist(compose: dict[str, Any]) -> None:
    services = compose["services"]
    volumes = set(compose.get("volumes") or {})

    for name, service in services.items():
        for dependency in service.get("depends_on") or []:
            assert dependency in services, f"{name} depends on {dependency}"
        for mount in service.get("volumes") or []:
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts {source}"
            else:
                assert source in volumes, f"{name} mounts volume {source}"


def test_compose_secrets_come_from_required_variables(
    compose: dict[str, Any],
) -> None:
    text = (DEPLOY / "compose.yaml").read_text()

    for variable in ("CARTWHEEL_REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        assert re.search(rf"\$\{{{variable}:\?", text), variable


def test_compose_hotpath_stages_resolve(compose: dict[str, Any]) -> None:
    variables = environment(compose["services"]["hotpath"])
    specs = json.loads(variables["CARTWHEEL_HOTPATH_STAGES"])

    unresolved = [spec for spec in specs if not is_resolvable(spec)]

    assert specs
    assert unresolved == []


def is_resolvable(spec: str) -> bool:
    """Return whether 'module:function' names an importable function."""
    module_name, _, function_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return False
    return callable(getattr(module, function_name, None))


def test_model_readers_mount_the_trainer_registry(compose: dict[str, Any]) -> None:
    services = compose["services"]
    registry = environment(services["trainer"])["CARTWHEEL_TRAINER_REGISTRY_DIR"]

    for name in ("trainer", "hotpath", "api"):
        targets = [mount.split(":")[1] for mount in services[name]["volumes"]]
        assert registry in targets, name


def test_api_reads_hotpath_checkpoints_read_only(compose: dict[str, Any]) -> None:
    services = compose["services"]
    folder = environment(services["hotpath"])["CARTWHEEL_LEARNER_CHECKPOINT_DIR"]
    api_folder = environment(services["api"])["CARTWHEEL_API_SIGNALS__CHECKPOINT_DIR"]
    writers = [m for m in services["hotpath"]["volumes"] if m.split(":")[1] == folder]
    readers = [m for m in services["api"]["volumes"] if m.split(":")[1] == folder]

    assert api_folder == folder
    assert len(writers) == 1
    assert [mount.split(":")[0] for mount in readers] == [writers[0].split(":")[0]]
    assert readers[0].endswith(":ro")


def test_image_creates_every_volume_folder(
    compose: dict[str, Any],
) -> None:
    # Docker copies a folder's owner into a new named volume only when the
    # image has that folder; otherwise the volume belongs to root.
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    created = set(re.findall(r"/var/lib/cartwheel/[\w-]+", dockerfile))
    targets = {
        mount.split(":")[1]
        for name in CARTWHEEL_SERVICES
        for mount in compose["services"][name].get("volumes", [])
        if mount.split(":")[1].startswith("/var/lib/cartwheel/")
    }

    assert targets
    assert targets <= created
