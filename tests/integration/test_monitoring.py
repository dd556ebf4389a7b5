"""The dashboard and alert rules against a real Prometheus scraping Cartwheel.

A Prometheus server (the Debian package's binary) scrapes the /metrics
endpoints of Cartwheel services started here on the session broker and Redis,
while a slice of the committed real sample is replayed through them. Every
dashboard query and alert expression must be valid PromQL, and every one must
return data.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from confluent_kafka import Producer

from schemas.events import Event, EventType
from services.common.kafka import create_topics, producer_config, standard_topics
from services.common.settings import KafkaSettings, TopicSettings
from services.demo.supervisor import Supervisor
from services.infra import find_free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "cartwheel.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
# Grafana replaces $__rate_interval with four scrape intervals or more.
RATE_INTERVAL = "15s"
SAMPLE_EVENTS = 3000
SAMPLE_USERS = ["monitoring-user", "user-without-events"]
INVALID_EVENTS = (b"{not json", b'{"event_type": "teleport"}')


@dataclass(frozen=True)
class Service:
    """A Cartwheel process that serves /metrics, and how to run it."""

    job: str
    module: str
    port_variable: str
    arguments: tuple[str, ...] = ()


SERVICES = [
    Service("cartwheel-hotpath", "services.hotpath", "CARTWHEEL_HOTPATH_METRICS_PORT"),
    Service(
        "cartwheel-catalog", "services.features", "CARTWHEEL_FEATURES_METRICS_PORT"
    ),
    Service("cartwheel-trainer", "services.trainer", "CARTWHEEL_TRAINER_METRICS_PORT"),
    Service("cartwheel-api", "services.api", "CARTWHEEL_API_PORT"),
    Service(
        "cartwheel-feedback", "services.feedback", "CARTWHEEL_FEEDBACK_METRICS_PORT"
    ),
]


def dashboard_queries() -> list[tuple[str, str]]:
    """Return (panel title, PromQL) for every target of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", RATE_INTERVAL)
            queries.append((panel["title"], expr))
    return queries


def alert_rules() -> list[tuple[str, str]]:
    """Return (alert name, PromQL) for every alert rule."""
    document = yaml.safe_load(ALERTS.read_text())
    return [
        (rule["alert"], rule["expr"])
        for group in document["groups"]
        for rule in group["rules"]
    ]


def metric_names(expr: str) -> set[str]:
    """Return the metric names an expression selects."""
    return set(re.findall(r"\b(cartwheel_[a-z0-9_]+|up)\b(?!\s*\()", expr))


class Prometheus:
    """A Prometheus server on a free loopback port, queried over its HTTP API."""

    def __init__(self, tmp_path: Path, targets: dict[str, str]) -> None:
        executable = shutil.which("prometheus")
        if executable is None:
            pytest.fail("prometheus is not installed; apt-get install prometheus")
        shutil.copy(ALERTS, tmp_path / "alerts.yml")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp_path / "alerts.yml")],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [address]}]}
                for job, address in targets.items()
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{find_free_port()}"
        self.log_file = tmp_path / "prometheus.log"
        with self.log_file.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    executable,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address={self.url.removeprefix('http://')}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._wait_ready()

    def _wait_ready(self, timeout_seconds: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"prometheus exited: {self.log_file.read_text()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        pytest.fail(f"prometheus not ready within {timeout_seconds} s")

    def query(self, expr: str) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr})
        return dict(response.json())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def resolvable_stages() -> list[str]:
    """Return the hot-path stages of deploy/compose.yaml that can be imported.

    Those that do not resolve are left out, and the data checks then list the
    queries that only they would feed.
    """
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    variables = compose["services"]["hotpath"]["environment"]
    found = []
    for spec in json.loads(variables["CARTWHEEL_HOTPATH_STAGES"]):
        module_name, _, function_name = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, function_name):
            found.append(spec)
    return found


def drive_api(base_url: str, user_ids: list[str]) -> None:
    """Read slates and post an invalid event, so every API metric has series.

    Waits up to 30 s for the API to answer; an API that never does shows up as
    missing data and, if it exited, in the list of exited services.
    """
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{base_url}/healthz", timeout=2).raise_for_status()
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.2)
    for user_id in user_ids:
        httpx.get(f"{base_url}/v1/users/{user_id}/slates/products", timeout=10)
    httpx.get(f"{base_url}/healthz", timeout=10)
    httpx.post(f"{base_url}/v1/events", content=b"{not json", timeout=10)


def produce_odd_events(kafka: KafkaSettings, topic: str) -> None:
    """Send invalid events, and a valid event older than the user's last one."""
    producer = Producer(producer_config(kafka, linger_ms=1))
    for value in INVALID_EVENTS:
        producer.produce(topic, value, b"monitoring-user")
    # Inside the committed sample's time span (2019-10-01, 00:00-02:40 UTC).
    newest = datetime(2019, 10, 1, 2, 0, tzinfo=UTC)
    for index, event_time in enumerate([newest, newest - timedelta(minutes=5)]):
        event = Event(
            event_id=f"monitoring-late-{index}",
            event_type=EventType.CLICK,
            user_id="monitoring-user",
            item_id="monitoring-item",
            event_time=event_time,
        )
        producer.produce(topic, event.model_dump_json().encode(), b"monitoring-user")
    producer.flush(10)


@dataclass
class Pipeline:
    """The running services, the Prometheus scraping them and what was skipped."""

    prometheus: Prometheus
    started: list[str]
    missing: list[str]
    stages: list[str]
    exited: dict[str, str]


def is_runnable(module: str) -> bool:
    """Return whether ``python -m module`` can run: the package has a __main__."""
    try:
        return importlib.util.find_spec(f"{module}.__main__") is not None
    except ModuleNotFoundError:
        return False


def plan_services(environment: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Give each runnable service a free metrics port in ``environment``.

    Returns:
        the scrape target of each runnable service's job, and the modules that
        have no ``__main__`` yet.
    """
    targets: dict[str, str] = {}
    missing: list[str] = []
    for service in SERVICES:
        if not is_runnable(service.module):
            missing.append(service.module)
            continue
        port = find_free_port()
        environment[service.port_variable] = str(port)
        targets[service.job] = f"127.0.0.1:{port}"
    return targets, missing


def wait_for_series(
    prometheus: Prometheus, names: set[str], timeout_seconds: float
) -> None:
    """Wait until every named metric has a series, or the deadline passes."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        absent = [n for n in names if not prometheus.query(n)["data"]["result"]]
        if not absent:
            return
        time.sleep(1.0)


@pytest.fixture(scope="module")
def pipeline(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    tmp_path = tmp_path_factory.mktemp("monitoring")
    suffix = tmp_path.name.replace("_", "-")
    topics = TopicSettings(
        events=f"mon-events-{suffix}",
        dead_letters=f"mon-dlq-{suffix}",
        catalog=f"mon-catalog-{suffix}",
        recommendations_prefix=f"mon-recs-{suffix}",
        training_examples=f"mon-examples-{suffix}",
        models=f"mon-models-{suffix}",
        partitions=2,
    )
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    create_topics(kafka, standard_topics(topics))
    environment = {
        "CARTWHEEL_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CARTWHEEL_REDIS_URL": redis_url,
        "CARTWHEEL_REDIS_KEY_PREFIX": f"mon{suffix[-8:]}".replace("-", ""),
        "CARTWHEEL_TOPIC_EVENTS": topics.events,
        "CARTWHEEL_TOPIC_DEAD_LETTERS": topics.dead_letters,
        "CARTWHEEL_TOPIC_CATALOG": topics.catalog,
        "CARTWHEEL_TOPIC_RECOMMENDATIONS_PREFIX": topics.recommendations_prefix,
        "CARTWHEEL_TOPIC_TRAINING_EXAMPLES": topics.training_examples,
        "CARTWHEEL_TOPIC_MODELS": topics.models,
        "CARTWHEEL_TOPIC_PARTITIONS": str(topics.partitions),
        "CARTWHEEL_FEEDBACK_APP_ID": f"mon-feedback-{suffix}",
        "CARTWHEEL_FEEDBACK_DATA_DIR": str(tmp_path / "feedback"),
        "CARTWHEEL_FEEDBACK_RATIO_REFRESH_SECONDS": "1",
        "CARTWHEEL_HOTPATH_STAGES": json.dumps(resolvable_stages()),
        "CARTWHEEL_TRAINER_REGISTRY_DIR": str(tmp_path / "registry"),
        # Private state: no checkpoint or consumer group of another run is reused.
        "CARTWHEEL_LEARNER_CHECKPOINT_DIR": str(tmp_path / "learner"),
        "CARTWHEEL_HOTPATH_GROUP_ID": f"mon-hotpath-{suffix}",
        "CARTWHEEL_FEATURES_GROUP_ID": f"mon-catalog-{suffix}",
        "CARTWHEEL_TRAINER_REFRESH_INTERVAL_SECONDS": "20",
    }
    targets, missing = plan_services(environment)
    with Supervisor(tmp_path / "logs", environment) as supervisor:
        processes = {
            service.job: supervisor.start(
                service.job, service.module, *service.arguments
            )
            for service in SERVICES
            if service.job in targets
        }
        prometheus = Prometheus(tmp_path, targets)
        try:
            replay = subprocess.run(
                [sys.executable, "-m", "services.replay", "rees46"]
                + ["--limit", str(SAMPLE_EVENTS)],
                env={**os.environ, **environment},
                capture_output=True,
                timeout=120,
            )
            assert replay.returncode == 0, replay.stderr.decode()[-2000:]
            produce_odd_events(kafka, topics.events)
            if "cartwheel-api" in targets:
                drive_api(f"http://{targets['cartwheel-api']}", SAMPLE_USERS)
            names = set().union(*(metric_names(e) for _, e in dashboard_queries()))
            wait_for_series(prometheus, names, timeout_seconds=60)
            exited = {
                job: process.log_file.read_text(errors="replace")[-1500:]
                for job, process in processes.items()
                if not process.is_running()
            }
            stages = json.loads(environment["CARTWHEEL_HOTPATH_STAGES"])
            yield Pipeline(prometheus, list(targets), missing, stages, exited)
        finally:
            prometheus.stop()


def describe_missing(empty: list[str], pipeline: Pipeline) -> str:
    lines = [f"{len(empty)} queries returned no data:", *empty]
    lines.append(f"services scraped: {pipeline.started}")
    lines.append(f"services without a __main__ module: {pipeline.missing}")
    lines.append(f"hot-path stages that could be imported: {pipeline.stages}")
    for job, log in pipeline.exited.items():
        lines.append(f"{job} exited early; end of its log:\n{log}")
    return "\n".join(lines)


def test_dashboard_and_alert_queries_are_valid_promql(pipeline: Pipeline) -> None:
    queries = dashboard_queries() + alert_rules()

    failures = {
        name: result.get("error")
        for name, expr in queries
        if (result := pipeline.prometheus.query(expr))["status"] != "success"
    }

    assert failures == {}


def test_dashboard_queries_return_data(pipeline: Pipeline) -> None:
    empty = [
        f"{title}: {expr}"
        for title, expr in dashboard_queries()
        if not pipeline.prometheus.query(expr)["data"]["result"]
    ]

    assert empty == [], describe_missing(empty, pipeline)


def test_alert_rule_inputs_return_data(pipeline: Pipeline) -> None:
    empty = sorted(
        f"{alert}: {name}"
        for alert, expr in alert_rules()
        for name in metric_names(expr)
        if not pipeline.prometheus.query(f"count({name})")["data"]["result"]
    )

    assert empty == [], describe_missing(empty, pipeline)


def test_prometheus_loads_every_alert_rule(pipeline: Pipeline) -> None:
    response = httpx.get(f"{pipeline.prometheus.url}/api/v1/rules").json()

    loaded = {
        rule["name"]
        for group in response["data"]["groups"]
        for rule in group["rules"]
        if rule["health"] != "err"
    }

    assert loaded == {name for name, _ in alert_rules()}


def test_services_keep_running_under_traffic(pipeline: Pipeline) -> None:
    assert pipeline.exited == {}
