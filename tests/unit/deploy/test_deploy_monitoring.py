"""deploy/prometheus and deploy/grafana: syntax and the metrics they read."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


SERVICES_DIR = DEPLOY.parent / "services"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "cartwheel.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing; install it with: apt-get install prometheus")
    return path


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def alert_expressions() -> list[str]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in document["groups"] for rule in group["rules"]]


def defined_metric_names() -> set[str]:
    """Return the names of every Prometheus metric the services define."""
    pattern = re.compile(r"(?:Counter|Gauge|Histogram|Summary)\(\s*\"(cartwheel_\w+)\"")
    names = set()
    for path in Path(SERVICES_DIR).rglob("*.py"):
        names |= set(pattern.findall(path.read_text()))
    return names


def exported_series(name: str) -> set[str]:
    series = {name}
    if name.endswith("_total"):
        series.add(name.removesuffix("_total"))
    series |= {name + suffix for suffix in HISTOGRAM_SUFFIXES}
    return series


def test_promtool_accepts_alert_rules() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_prometheus_config() -> None:
    config = DEPLOY / "prometheus" / "prometheus.yml"

    result = subprocess.run(
        [promtool(), "check", "config", "--syntax-only", str(config)],
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_have_severity_and_summary() -> None:
    document = yaml.safe_load(ALERTS.read_text())

    for group in document["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert rule["annotations"]["summary"], rule["alert"]


def test_dashboard_panels_have_unique_ids_and_provisioned_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    datasources = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    uid = datasources["datasources"][0]["uid"]

    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid, panel["title"]
            assert panel["targets"], panel["title"]


def test_dashboard_provider_path_is_mounted() -> None:
    compose: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/cartwheel.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]

    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{path}:ro" in mounts


def test_queries_read_only_metrics_the_services_define() -> None:
    available = set().union(*(exported_series(n) for n in defined_metric_names()))
    used = set()
    for expr in dashboard_expressions() + alert_expressions():
        used |= set(re.findall(r"\bcartwheel_\w+", expr))

    assert used - available == set()


def test_promtool_alert_unit_tests_pass() -> None:
    tests = DEPLOY / "prometheus" / "alerts_test.yml"

    result = subprocess.run(
        [promtool(), "test", "rules", str(tests)], capture_output=True, text=True
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test() -> None:
    tests = yaml.safe_load((DEPLOY / "prometheus" / "alerts_test.yml").read_text())
    tested = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
    }
    document = yaml.safe_load(ALERTS.read_text())
    alerts = {rule["alert"] for group in document["groups"] for rule in group["rules"]}

    assert alerts - tested == set()


def test_dashboard_has_a_row_per_operating_concern() -> None:
    dashboard = json.loads(DASHBOARD.read_text())

    rows = [panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"]

    assert rows == [
        "Throughput and outcomes",
        "Dead letters",
        "Consumer lag",
        "Batch sizes",
        "Redis and model latency",
        "Event-to-slate latency",
        "Models",
        "HTTP API",
        "Training",
        "Feedback",
    ]
