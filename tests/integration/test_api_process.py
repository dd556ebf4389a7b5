"""The HTTP API run as ``python -m services.api`` and stopped by a signal."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from services.common.kafka import TopicSpec, create_topics
from services.common.settings import KafkaSettings
from services.infra import find_free_port
from tests.entry_points import REPOSITORY, environment_without_settings

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"]
)
@pytest.mark.parametrize(
    "command",
    [("services.api",), ("services.cli", "api", "serve")],
    ids=["python-m", "cartwheel"],
)
def test_api_exits_0_after_stop_signal(
    kafka_bootstrap: str,
    redis_url: str,
    stop_signal: signal.Signals,
    command: tuple[str, ...],
) -> None:
    port = find_free_port()
    environment = _environment(kafka_bootstrap, redis_url, port)

    returncode, stderr = _serve_until(environment, port, stop_signal, command=command)

    assert returncode == 0, stderr
    assert f"stop requested signal={stop_signal.name}" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("second_signal", "gap_seconds"),
    [(signal.SIGTERM, 0.005), (signal.SIGINT, 0.1)],
    ids=["SIGTERM-5ms", "SIGINT-100ms"],
)
def test_api_exits_0_after_repeated_stop_signal(
    kafka_bootstrap: str,
    redis_url: str,
    second_signal: signal.Signals,
    gap_seconds: float,
) -> None:
    port = find_free_port()
    environment = _environment(kafka_bootstrap, redis_url, port)

    def signal_again(process: subprocess.Popen[str]) -> None:
        time.sleep(gap_seconds)
        process.send_signal(second_signal)

    returncode, stderr = _serve_until(
        environment,
        port,
        signal.SIGTERM,
        command=("services.cli", "api", "serve"),
        after_signal=signal_again,
    )

    # The second signal may cut the app's shutdown short, with a traceback of
    # the cancelled lifespan, but the exit status stays 0.
    assert returncode == 0, stderr
    assert "stop requested signal=SIGTERM" in stderr


def test_api_stops_session_follower_on_sigterm(
    kafka_bootstrap: str,
    redis_url: str,
    make_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    port = find_free_port()
    environment = _environment(kafka_bootstrap, redis_url, port)
    environment["CARTWHEEL_TOPIC_EVENTS"] = make_topic("events", 2)
    environment["CARTWHEEL_API_SIGNALS__CHECKPOINT_DIR"] = str(tmp_path / "learner")

    returncode, stderr = _serve_until(environment, port, signal.SIGTERM)

    assert returncode == 0, stderr
    assert "session follower started" in stderr
    assert "partitions=2" in stderr
    assert stderr.count("no learner checkpoint found") == 1
    assert "Traceback" not in stderr
    assert not (tmp_path / "learner").exists()


def test_api_follows_topics_created_after_start(
    kafka_bootstrap: str,
    redis_url: str,
    kafka_settings: KafkaSettings,
    unique_name: Callable[[str], str],
) -> None:
    port = find_free_port()
    environment = _environment(kafka_bootstrap, redis_url, port)
    events, models = unique_name("events"), unique_name("models")
    environment["CARTWHEEL_TOPIC_EVENTS"] = events
    environment["CARTWHEEL_TOPIC_MODELS"] = models
    follower = f'cartwheel_api_session_follower_running{{topic="{events}"}}'
    watcher = f'cartwheel_model_watcher_running{{topic="{models}"}}'

    def create_topics_once_serving() -> None:
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0).text
        assert f"{follower} 0.0" in metrics
        assert f"{watcher} 0.0" in metrics
        create_topics(
            kafka_settings,
            [TopicSpec(events, 2), TopicSpec(models, 1, is_compacted=True)],
        )
        deadline = time.monotonic() + 60
        while not _shows(port, f"{follower} 1.0", f"{watcher} 1.0"):
            assert time.monotonic() < deadline, "the API did not follow in 60 s"
            time.sleep(0.2)

    returncode, stderr = _serve_until(
        environment, port, signal.SIGTERM, create_topics_once_serving
    )

    assert returncode == 0, stderr
    assert stderr.count("session follower waits for the events topic") == 1
    assert stderr.count("model watcher waits for the models topic") == 1
    assert stderr.count("session follower started") == 1
    assert stderr.count("model watcher started") == 1
    assert "Traceback" not in stderr


def _shows(port: int, *samples: str) -> bool:
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0).text
    return all(sample in metrics for sample in samples)


def _environment(kafka_bootstrap: str, redis_url: str, port: int) -> dict[str, str]:
    return {
        **environment_without_settings(),
        "CARTWHEEL_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CARTWHEEL_REDIS_URL": redis_url,
        "CARTWHEEL_API_HOST": "127.0.0.1",
        "CARTWHEEL_API_PORT": str(port),
    }


def _serve_until(
    environment: dict[str, str],
    port: int,
    stop_signal: signal.Signals,
    while_serving: Callable[[], None] | None = None,
    command: tuple[str, ...] = ("services.api",),
    after_signal: Callable[[subprocess.Popen[str]], None] | None = None,
) -> tuple[int, str]:
    """Start the API, send ``stop_signal`` once it serves; return its status and log.

    ``while_serving`` runs, when given, between the first reply and the signal.
    ``command`` is the module to run with ``python -m`` and its arguments.
    ``after_signal`` runs, when given, right after the signal.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", *command],
        env=environment,
        cwd=REPOSITORY,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The socket listens before uvicorn starts, so wait for a reply, which
        # comes only after uvicorn has installed its SIGINT and SIGTERM handlers.
        deadline = time.monotonic() + 60
        while not _is_serving(port):
            assert process.poll() is None, "the API exited before serving"
            assert time.monotonic() < deadline, "the API did not serve in 60 s"
            time.sleep(0.1)
        if while_serving is not None:
            while_serving()
        process.send_signal(stop_signal)
        if after_signal is not None:
            after_signal(process)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    return process.returncode, stderr


def _is_serving(port: int) -> bool:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0)
    except httpx.TransportError:
        return False
    return response.status_code == 200
