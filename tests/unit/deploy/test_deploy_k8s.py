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


def pod_spec(manifests: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return dict(workloads(manifests)[name]["spec"]["template"]["spec"])


def variables(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in container.get("env", [])}


def mount_at(spec: dict[str, Any], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the container's mount at ``path`` and the pod volume it mounts."""
    (mount,) = [
        m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == path
    ]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    return mount, volume


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


def test_hotpath_instance_name_is_stable_pod_name(
    manifests: list[dict[str, Any]],
) -> None:
    hotpath = pod_spec(manifests, "cartwheel-hotpath")
    env = variables(hotpath["containers"][0])

    instance = env["CARTWHEEL_LEARNER_INSTANCE_NAME"]["valueFrom"]

    # A StatefulSet's pod keeps its name across restarts, so a restarted
    # replica finds its own checkpoint and leaves no file under a new name.
    assert "cartwheel-hotpath" in objects(manifests, "StatefulSet")
    assert instance["fieldRef"]["fieldPath"] == "metadata.name"


def test_hotpath_checkpoints_to_shared_claim(
    manifests: list[dict[str, Any]],
) -> None:
    statefulset = objects(manifests, "StatefulSet")["cartwheel-hotpath"]["spec"]
    hotpath = pod_spec(manifests, "cartwheel-hotpath")
    folder = variables(hotpath["containers"][0])["CARTWHEEL_LEARNER_CHECKPOINT_DIR"]

    mount, volume = mount_at(hotpath, folder["value"])

    claim = objects(manifests, "PersistentVolumeClaim")[
        volume["persistentVolumeClaim"]["claimName"]
    ]
    assert not mount.get("readOnly", False)
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert "volumeClaimTemplates" not in statefulset


def test_api_mounts_hotpath_checkpoints_read_only(
    manifests: list[dict[str, Any]],
) -> None:
    hotpath = pod_spec(manifests, "cartwheel-hotpath")
    api = pod_spec(manifests, "cartwheel-api")
    folder = variables(hotpath["containers"][0])["CARTWHEEL_LEARNER_CHECKPOINT_DIR"]
    api_env = variables(api["containers"][0])

    _, written = mount_at(hotpath, folder["value"])
    mount, read = mount_at(api, folder["value"])

    assert api_env["CARTWHEEL_API_SIGNALS__CHECKPOINT_DIR"]["value"] == folder["value"]
    assert "CARTWHEEL_API_SIGNALS__IS_ENABLED" not in api_env
    assert read["persistentVolumeClaim"] == written["persistentVolumeClaim"]
    assert mount["readOnly"] is True


def test_api_checkpoint_key_matches_hotpath(
    manifests: list[dict[str, Any]],
) -> None:
    hotpath = pod_spec(manifests, "cartwheel-hotpath")["containers"][0]
    api = pod_spec(manifests, "cartwheel-api")["containers"][0]

    key = variables(api)["CARTWHEEL_API_SIGNALS__CHECKPOINT_KEY"]["valueFrom"]

    # The hot path reads every key of that secret under its own name.
    assert {"secretRef": {"name": key["secretKeyRef"]["name"]}} in hotpath["envFrom"]
    assert key["secretKeyRef"]["key"] == "CARTWHEEL_LEARNER_CHECKPOINT_KEY"
    assert key["secretKeyRef"]["optional"] is True


def test_shared_claims_are_read_write_many(
    manifests: list[dict[str, Any]],
) -> None:
    pods: dict[str, int] = {}
    for workload in workloads(manifests).values():
        for volume in workload["spec"]["template"]["spec"].get("volumes", []):
            if "persistentVolumeClaim" in volume:
                claim_name = volume["persistentVolumeClaim"]["claimName"]
                replicas = workload["spec"].get("replicas", 1)
                pods[claim_name] = pods.get(claim_name, 0) + replicas
    claims = objects(manifests, "PersistentVolumeClaim")

    shared = {name for name, count in pods.items() if count > 1}

    assert shared == {"cartwheel-registry", "cartwheel-learner"}
    for name in shared:
        assert claims[name]["spec"]["accessModes"] == ["ReadWriteMany"], name
