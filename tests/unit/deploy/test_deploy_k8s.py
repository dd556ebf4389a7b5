"""deploy/k8s: objects, references between them, settings, probes and scaling."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.common.settings import TopicSettings
from services.hotpath.settings import HotPathSettings

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"

# Created by the operator from the brokers' CA file (see deploy/README.md).
EXTERNAL_SECRETS = {"kafka-ca"}


def objects(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def workloads(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return the Deployments and StatefulSets by name."""
    return {**objects(manifests, "Deployment"), **objects(manifests, "StatefulSet")}


def containers(manifests: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for kind in ("Deployment", "StatefulSet", "Job"):
        for name, manifest in objects(manifests, kind).items():
            for container in manifest["spec"]["template"]["spec"]["containers"]:
                found.append((name, container))
    return found


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    files = {p.name for p in Path(DEPLOY / "k8s").glob("*.yaml")}

    assert set(kustomization["resources"]) == files - {"kustomization.yaml"}


def test_manifests_are_named_and_namespaced(manifests: list[dict[str, Any]]) -> None:
    for manifest in manifests:
        assert manifest["apiVersion"], manifest["__file__"]
        assert manifest["metadata"]["name"], manifest["__file__"]
        if manifest["kind"] != "Namespace":
            assert manifest["metadata"]["namespace"] == "cartwheel", manifest[
                "__file__"
            ]


def test_every_service_has_a_workload(manifests: list[dict[str, Any]]) -> None:
    names = set(workloads(manifests))

    assert {
        f"cartwheel-{s}" for s in ("hotpath", "catalog", "trainer", "feedback", "api")
    } <= names


def test_deployment_selectors_match_pod_labels(
    manifests: list[dict[str, Any]],
) -> None:
    for name, deployment in workloads(manifests).items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), name


def test_config_and_secret_keys_exist_in_settings(
    manifests: list[dict[str, Any]], known_variables: set[str]
) -> None:
    keys = set(objects(manifests, "ConfigMap")["cartwheel-config"]["data"])
    keys |= set(objects(manifests, "Secret")["cartwheel-secrets"]["stringData"])

    assert keys - known_variables == set()


def test_container_variables_exist_in_settings(
    manifests: list[dict[str, Any]], known_variables: set[str]
) -> None:
    unknown = {
        f"{name}: {variable['name']}"
        for name, container in containers(manifests)
        for variable in container.get("env", [])
        if variable["name"] not in known_variables
    }

    assert unknown == set()


def test_env_from_references_exist(manifests: list[dict[str, Any]]) -> None:
    config_maps = set(objects(manifests, "ConfigMap"))
    secrets = set(objects(manifests, "Secret")) | EXTERNAL_SECRETS

    for name, container in containers(manifests):
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in config_maps, name
            if "secretRef" in source:
                assert source["secretRef"]["name"] in secrets, name


def test_volume_references_exist(manifests: list[dict[str, Any]]) -> None:
    claims = set(objects(manifests, "PersistentVolumeClaim"))
    secrets = set(objects(manifests, "Secret")) | EXTERNAL_SECRETS

    for kind in ("Deployment", "StatefulSet", "Job"):
        for name, manifest in objects(manifests, kind).items():
            for volume in manifest["spec"]["template"]["spec"].get("volumes", []):
                if "persistentVolumeClaim" in volume:
                    assert volume["persistentVolumeClaim"]["claimName"] in claims, name
                if "secret" in volume:
                    assert volume["secret"]["secretName"] in secrets, name


def test_probes_target_declared_ports(manifests: list[dict[str, Any]]) -> None:
    for name, manifest in workloads(manifests).items():
        for container in manifest["spec"]["template"]["spec"]["containers"]:
            ports = {port["name"] for port in container["ports"]}
            for probe in ("livenessProbe", "readinessProbe"):
                assert container[probe]["httpGet"]["port"] in ports, (name, probe)


def test_scrape_annotations_match_metrics_port(
    manifests: list[dict[str, Any]],
) -> None:
    for name, manifest in workloads(manifests).items():
        annotations = manifest["spec"]["template"]["metadata"]["annotations"]
        container = manifest["spec"]["template"]["spec"]["containers"][0]
        variables = {v["name"]: v.get("value") for v in container.get("env", [])}
        port_values = {
            value for key, value in variables.items() if key.endswith("_PORT")
        }
        container_ports = {str(port["containerPort"]) for port in container["ports"]}

        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/port"] in port_values, name
        assert annotations["prometheus.io/port"] in container_ports, name


def test_images_and_commands_are_runnable(manifests: list[dict[str, Any]]) -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    image = compose["x-cartwheel"]["image"]

    for name, container in containers(manifests):
        assert container["image"] == image, name
        command = container["command"]
        if command[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(f"{command[2]}.__main__"), name
        else:
            assert command == ["cartwheel", "topics", "create"], name


@pytest.fixture
def scaled_object(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return objects(manifests, "ScaledObject")["cartwheel-hotpath"]


def test_hotpath_scales_on_its_consumer_group_lag(
    scaled_object: dict[str, Any], manifests: list[dict[str, Any]]
) -> None:
    trigger = scaled_object["spec"]["triggers"][0]
    target = scaled_object["spec"]["scaleTargetRef"]["name"]

    assert target in workloads(manifests)
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == HotPathSettings().group_id
    assert trigger["metadata"]["topic"] == TopicSettings().events


def test_hotpath_scales_at_most_to_partition_count(
    scaled_object: dict[str, Any], manifests: list[dict[str, Any]]
) -> None:
    config = objects(manifests, "ConfigMap")["cartwheel-config"]["data"]
    kafka = scaled_object["spec"]["triggers"][0]["metadata"]

    assert scaled_object["spec"]["maxReplicaCount"] == int(
        config["CARTWHEEL_TOPIC_PARTITIONS"]
    )
    assert kafka["bootstrapServers"] == config["CARTWHEEL_KAFKA_BOOTSTRAP"]


def test_hotpath_stages_match_compose(manifests: list[dict[str, Any]]) -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    expected = compose["services"]["hotpath"]["environment"]["CARTWHEEL_HOTPATH_STAGES"]
    container = workloads(manifests)["cartwheel-hotpath"]["spec"]["template"]["spec"][
        "containers"
    ][0]

    variables = {v["name"]: v.get("value") for v in container["env"]}

    assert variables["CARTWHEEL_HOTPATH_STAGES"] == expected


def test_pods_run_as_the_image_user(manifests: list[dict[str, Any]]) -> None:
    for kind in ("Deployment", "StatefulSet", "Job"):
        for name, manifest in objects(manifests, kind).items():
            context = manifest["spec"]["template"]["spec"]["securityContext"]
            assert context["runAsNonRoot"] is True, name
            assert context["runAsUser"] == 10001, name


def test_model_readers_mount_the_trainer_registry(
    manifests: list[dict[str, Any]],
) -> None:
    deployments = workloads(manifests)
    trainer = deployments["cartwheel-trainer"]["spec"]["template"]["spec"]
    variables = {v["name"]: v.get("value") for v in trainer["containers"][0]["env"]}
    registry = variables["CARTWHEEL_TRAINER_REGISTRY_DIR"]

    for name in ("cartwheel-trainer", "cartwheel-hotpath", "cartwheel-api"):
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        paths = [mount["mountPath"] for mount in container["volumeMounts"]]
        assert registry in paths, name


def test_hotpath_checkpoints_per_replica_on_its_own_volume(
    manifests: list[dict[str, Any]],
) -> None:
    hotpath = objects(manifests, "StatefulSet")["cartwheel-hotpath"]["spec"]
    container = hotpath["template"]["spec"]["containers"][0]
    variables = {v["name"]: v for v in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    claims = {c["metadata"]["name"] for c in hotpath["volumeClaimTemplates"]}

    instance = variables["CARTWHEEL_LEARNER_INSTANCE_NAME"]["valueFrom"]
    assert instance["fieldRef"]["fieldPath"] == "metadata.name"
    checkpoint_dir = variables["CARTWHEEL_LEARNER_CHECKPOINT_DIR"]["value"]
    assert mounts["learner"] == checkpoint_dir
    assert "learner" in claims
