"""The feedback worker end to end: a real Faust worker on the broker and Redis."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis
from confluent_kafka import Producer

from schemas.events import Event, EventType
from schemas.recommendations import CandidateSource, Slate, SlateItem, Surface
from services.common.kafka import TopicSpec, create_topics, producer_config
from services.common.settings import KafkaSettings, RedisSettings
from services.feedback.reader import OutcomeKey, outcome_counts
from services.feedback.tables import Outcome
from services.infra import LocalServer, find_free_port, start_broker
from tests.killed_demo import kill_demo_parent
from tests.persistent_redis import PersistentRedis

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 2
VERSION = "mt-20260105-abc1234"
USERS = 20
START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


class FeedbackWorker:
    """A feedback worker subprocess with its own topics, group and key prefix."""

    def __init__(self, env: dict[str, str], log_file: Path, metrics_port: int):
        self.env = env
        self.log_file = log_file
        self.metrics_port = metrics_port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.feedback"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")[-4000:]


@pytest.fixture
def names(unique_name: Callable[[str], str]) -> dict[str, str]:
    return {
        "events": unique_name("fb-events"),
        "prefix": unique_name("fb-recs"),
        "group": unique_name("fb-group"),
    }


def prepare_worker(
    kafka_settings: KafkaSettings,
    redis_settings: RedisSettings,
    names: dict[str, str],
    tmp_path: Path,
) -> FeedbackWorker:
    """Create the worker's topics on ``kafka_settings``' broker; do not start it."""
    specs = [TopicSpec(names["events"], PARTITIONS)]
    specs += [
        TopicSpec(f"{names['prefix']}.{surface.value}", PARTITIONS)
        for surface in Surface
    ]
    create_topics(kafka_settings, specs)
    port = find_free_port()
    env = {
        **os.environ,
        "CARTWHEEL_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
        "CARTWHEEL_REDIS_URL": redis_settings.url.get_secret_value(),
        "CARTWHEEL_REDIS_KEY_PREFIX": redis_settings.key_prefix,
        "CARTWHEEL_TOPIC_EVENTS": names["events"],
        "CARTWHEEL_TOPIC_RECOMMENDATIONS_PREFIX": names["prefix"],
        "CARTWHEEL_TOPIC_PARTITIONS": str(PARTITIONS),
        "CARTWHEEL_FEEDBACK_APP_ID": names["group"],
        "CARTWHEEL_FEEDBACK_METRICS_PORT": str(port),
        "CARTWHEEL_FEEDBACK_DATA_DIR": str(tmp_path / "data"),
        "CARTWHEEL_FEEDBACK_RATIO_REFRESH_SECONDS": "0.5",
    }
    return FeedbackWorker(env, tmp_path / "worker.log", port)


@pytest.fixture
def make_worker(
    redis_settings: RedisSettings, names: dict[str, str], tmp_path: Path
) -> Iterator[Callable[[KafkaSettings], FeedbackWorker]]:
    """Return a factory of workers on a given broker, killed at teardown."""
    workers: list[FeedbackWorker] = []

    def make(kafka_settings: KafkaSettings) -> FeedbackWorker:
        workers.append(prepare_worker(kafka_settings, redis_settings, names, tmp_path))
        return workers[-1]

    yield make
    for feedback in workers:
        feedback.stop(signal.SIGKILL)


@pytest.fixture
def worker(
    make_worker: Callable[[KafkaSettings], FeedbackWorker],
    kafka_settings: KafkaSettings,
) -> FeedbackWorker:
    return make_worker(kafka_settings)


def publish_round(
    producer: Producer, names: dict[str, str], round_index: int, users: int
) -> None:
    """Publish, per user, a trigger event, its slate and a next event on item b."""
    for user in range(users):
        user_id = f"user-{user}"
        base = round_index * 100
        trigger = Event(
            event_id=f"{user_id}-r{round_index}-e1",
            event_type=EventType.CLICK,
            user_id=user_id,
            item_id="a",
            event_time=START + timedelta(seconds=base),
        )
        slate = Slate(
            recommendation_id=uuid.uuid4().hex,
            surface=Surface.PRODUCTS,
            user_id=user_id,
            trigger_event_id=trigger.event_id,
            items=[
                SlateItem(
                    item_id="b", rank=1, score=0.9, source=CandidateSource.TRENDING
                )
            ],
            model_version=VERSION,
            generated_at=datetime.now(UTC),
            latency_ms=2.0,
        )
        follow_up = trigger.model_copy(
            update={
                "event_id": f"{user_id}-r{round_index}-e2",
                "item_id": "b",
                "event_time": START + timedelta(seconds=base + 30),
            }
        )
        key = user_id.encode()
        producer.produce(names["events"], trigger.model_dump_json().encode(), key)
        producer.produce(
            f"{names['prefix']}.products", slate.model_dump_json().encode(), key
        )
        producer.produce(names["events"], follow_up.model_dump_json().encode(), key)
    producer.flush(10)


def wait_for_counts(
    redis_client: redis.Redis,
    prefix: str,
    expected: dict[OutcomeKey, int],
    worker: FeedbackWorker,
    timeout_seconds: float = 60.0,
) -> Counter[OutcomeKey]:
    deadline = time.monotonic() + timeout_seconds
    counts: Counter[OutcomeKey] = Counter()
    since = datetime.now(UTC) - timedelta(days=1)
    while time.monotonic() < deadline:
        counts = outcome_counts(redis_client, prefix, since)
        if all(counts[key] >= value for key, value in expected.items()):
            return counts
        if worker.process is not None and worker.process.poll() is not None:
            pytest.fail(f"worker exited early; log:\n{worker.log()}")
        time.sleep(0.2)
    pytest.fail(f"counts {dict(counts)} never reached {expected}; log:\n{worker.log()}")


def expected_counts(rounds: int, users: int) -> dict[OutcomeKey, int]:
    return {
        ("products", VERSION, Outcome.IMPRESSION): rounds * users,
        ("products", VERSION, Outcome.HIT): rounds * users,
        ("products", VERSION, Outcome.CLICK): rounds * users,
    }


def scrape_duplicates(worker: FeedbackWorker) -> float:
    text = httpx.get(f"http://127.0.0.1:{worker.metrics_port}/metrics").text
    match = re.search(
        r'^cartwheel_feedback_messages_total\{outcome="duplicate"\} (\S+)$',
        text,
        re.MULTILINE,
    )
    return float(match.group(1)) if match else 0.0


def run_two_rounds(
    worker: FeedbackWorker,
    kafka_settings: KafkaSettings,
    redis_client: redis.Redis,
    prefix: str,
    names: dict[str, str],
    stop_signal: signal.Signals,
) -> Counter[OutcomeKey]:
    """Count one round, stop the worker with ``stop_signal``, then count another."""
    producer = Producer(producer_config(kafka_settings, linger_ms=1))
    worker.start()
    publish_round(producer, names, 0, USERS)
    wait_for_counts(redis_client, prefix, expected_counts(1, USERS), worker)
    worker.stop(stop_signal)

    publish_round(producer, names, 1, USERS)
    worker.start()
    return wait_for_counts(redis_client, prefix, expected_counts(2, USERS), worker)


def test_worker_counts_continue_after_graceful_restart(
    worker: FeedbackWorker,
    kafka_settings: KafkaSettings,
    redis_settings: RedisSettings,
    redis_client: redis.Redis,
    names: dict[str, str],
) -> None:
    counts = run_two_rounds(
        worker,
        kafka_settings,
        redis_client,
        redis_settings.key_prefix,
        names,
        signal.SIGTERM,
    )
    log = worker.log_file.read_text(errors="replace")

    assert counts == expected_counts(2, USERS)
    assert f"feedback app stopped app_id={names['group']}" in log


def test_worker_counts_not_doubled_after_kill(
    worker: FeedbackWorker,
    kafka_settings: KafkaSettings,
    redis_settings: RedisSettings,
    redis_client: redis.Redis,
    names: dict[str, str],
) -> None:
    # No offset is committed before the kill, so the restarted worker reads
    # every message of the first round again.
    worker.env["CARTWHEEL_FEEDBACK_COMMIT_INTERVAL_SECONDS"] = "120"

    counts = run_two_rounds(
        worker,
        kafka_settings,
        redis_client,
        redis_settings.key_prefix,
        names,
        signal.SIGKILL,
    )
    duplicates = scrape_duplicates(worker)
    log = worker.log_file.read_text(errors="replace")

    assert counts == expected_counts(2, USERS)
    assert duplicates == 3 * USERS
    assert "feedback app stopped" not in log


def test_worker_exports_outcomes_to_prometheus(
    worker: FeedbackWorker,
    kafka_settings: KafkaSettings,
    redis_settings: RedisSettings,
    redis_client: redis.Redis,
    names: dict[str, str],
) -> None:
    producer = Producer(producer_config(kafka_settings, linger_ms=1))
    worker.start()
    publish_round(producer, names, 0, 3)
    wait_for_counts(
        redis_client, redis_settings.key_prefix, expected_counts(1, 3), worker
    )

    deadline = time.monotonic() + 30
    text = ""
    while (
        time.monotonic() < deadline and "cartwheel_feedback_outcome_ratio{" not in text
    ):
        text = httpx.get(f"http://127.0.0.1:{worker.metrics_port}/metrics").text
        time.sleep(0.2)

    labels = f'model_version="{VERSION}",outcome="hit",surface="products"'
    assert f"cartwheel_feedback_outcomes_total{{{labels}}} 3.0" in text
    assert f"cartwheel_feedback_outcome_ratio{{{labels}}} 1.0" in text


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[PersistentRedis]:
    server = PersistentRedis(tmp_path / "redis")
    server.directory.mkdir()
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()


def count_round_then_fail_redis(
    worker: FeedbackWorker,
    own_redis: PersistentRedis,
    kafka_settings: KafkaSettings,
    names: dict[str, str],
) -> redis.Redis:
    """Count one round, stop Redis, publish a second round and await a retry.

    Returns:
        a client of ``own_redis`` for reading the counts once it is back.
    """
    worker.env["CARTWHEEL_REDIS_URL"] = own_redis.url
    worker.env["CARTWHEEL_FEEDBACK_RETRY_INITIAL_SECONDS"] = "0.1"
    worker.env["CARTWHEEL_FEEDBACK_RETRY_MAX_SECONDS"] = "0.5"
    client = redis.Redis.from_url(own_redis.url)
    producer = Producer(producer_config(kafka_settings, linger_ms=1))
    worker.start()
    publish_round(producer, names, 0, USERS)
    wait_for_counts(client, prefix_of(worker), expected_counts(1, USERS), worker)

    own_redis.stop()
    publish_round(producer, names, 1, USERS)
    deadline = time.monotonic() + 30
    while "retrying batch" not in worker.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    return client


def prefix_of(worker: FeedbackWorker) -> str:
    return worker.env["CARTWHEEL_REDIS_KEY_PREFIX"]


def test_worker_retries_through_redis_outage(
    worker: FeedbackWorker,
    own_redis: PersistentRedis,
    kafka_settings: KafkaSettings,
    names: dict[str, str],
) -> None:
    client = count_round_then_fail_redis(worker, own_redis, kafka_settings, names)
    time.sleep(2.0)
    exit_during_outage = worker.process.poll() if worker.process else None
    own_redis.start()
    counts = wait_for_counts(
        client, prefix_of(worker), expected_counts(2, USERS), worker
    )
    worker.stop(signal.SIGTERM)
    client.close()

    assert exit_during_outage is None
    assert "redis failed, retrying batch" in worker.log()
    assert counts == expected_counts(2, USERS)
    assert worker.process is not None
    assert worker.process.returncode == 0


def test_worker_stops_on_sigterm_during_redis_outage(
    worker: FeedbackWorker,
    own_redis: PersistentRedis,
    kafka_settings: KafkaSettings,
    names: dict[str, str],
) -> None:
    client = count_round_then_fail_redis(worker, own_redis, kafka_settings, names)
    assert worker.process is not None
    worker.process.send_signal(signal.SIGTERM)
    try:
        exit_status: int | None = worker.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        exit_status = None
    stopped_log = worker.log()
    # The batch was not committed, so the restarted worker counts it.
    own_redis.start()
    worker.start()
    counts = wait_for_counts(
        client, prefix_of(worker), expected_counts(2, USERS), worker
    )
    worker.stop(signal.SIGTERM)
    client.close()

    assert exit_status == 0, stopped_log
    assert "exiting without committing the batch" in stopped_log
    assert counts == expected_counts(2, USERS)


STOP_TIMEOUT_SECONDS = 5.0


@pytest.fixture
def frozen_broker(tmp_path: Path) -> Iterator[LocalServer]:
    """A broker of this test's own, which the test may freeze with SIGSTOP.

    Teardown resumes it before stopping it, so no stopped process is left.
    """
    server = start_broker(tmp_path / "broker", find_free_port())
    pid = server.pid()
    assert pid is not None
    yield server
    os.kill(pid, signal.SIGCONT)
    server.stop()


def test_frozen_broker_short_timeout_exits_2(
    frozen_broker: LocalServer,
    make_worker: Callable[[KafkaSettings], FeedbackWorker],
) -> None:
    feedback = make_worker(KafkaSettings(bootstrap=frozen_broker.address))
    feedback.env["CARTWHEEL_FEEDBACK_STOP_TIMEOUT_SECONDS"] = str(STOP_TIMEOUT_SECONDS)
    broker_pid = frozen_broker.pid()
    assert broker_pid is not None
    # The first revocation is logged while the worker joins its group, with
    # its signal handlers installed. Freezing the broker then leaves Faust's
    # consumer thread waiting for a response that never comes, and the stop
    # timeout (5 s) ends before the stop gives up on the broker (10 s).
    feedback.start()
    deadline = time.monotonic() + 30
    while "partitions revoked" not in feedback.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(broker_pid, signal.SIGSTOP)

    assert feedback.process is not None
    feedback.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    try:
        exit_status: int | None = feedback.process.wait(
            timeout=STOP_TIMEOUT_SECONDS + 10
        )
    except subprocess.TimeoutExpired:
        exit_status = None
    elapsed = time.monotonic() - signalled
    log = feedback.log()

    assert exit_status == 2, log
    assert elapsed < STOP_TIMEOUT_SECONDS + 10
    assert "gave up waiting for the broker" in log
    assert "Traceback" not in log


FROZEN_GIVE_UP_LINE = (
    "broker did not respond in time, stopping without committing offsets "
)


def stop_on_frozen_broker(
    feedback: FeedbackWorker, frozen_broker: LocalServer
) -> tuple[int | None, str]:
    """Freeze the broker, send SIGTERM and return the exit status and the log.

    The status is None when the worker is still running a minute later.
    """
    broker_pid = frozen_broker.pid()
    assert broker_pid is not None
    assert feedback.process is not None
    os.kill(broker_pid, signal.SIGSTOP)
    feedback.process.send_signal(signal.SIGTERM)
    try:
        exit_status: int | None = feedback.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        exit_status = None
    return exit_status, feedback.log()


def test_frozen_broker_offsets_due_exits_0(
    frozen_broker: LocalServer,
    make_worker: Callable[[KafkaSettings], FeedbackWorker],
    redis_client: redis.Redis,
    names: dict[str, str],
) -> None:
    kafka_settings = KafkaSettings(bootstrap=frozen_broker.address)
    feedback = make_worker(kafka_settings)
    # No periodic commit, so the offsets of the counted round are due at the
    # stop, and the stop's last commit waits for the frozen broker.
    feedback.env["CARTWHEEL_FEEDBACK_COMMIT_INTERVAL_SECONDS"] = "120"
    producer = Producer(producer_config(kafka_settings, linger_ms=1))
    feedback.start()
    publish_round(producer, names, 0, 3)
    wait_for_counts(redis_client, prefix_of(feedback), expected_counts(1, 3), feedback)

    exit_status, log = stop_on_frozen_broker(feedback, frozen_broker)

    assert exit_status == 0, log
    assert FROZEN_GIVE_UP_LINE in log
    assert "Traceback" not in log


def test_frozen_broker_during_join_exits_0(
    frozen_broker: LocalServer,
    make_worker: Callable[[KafkaSettings], FeedbackWorker],
) -> None:
    feedback = make_worker(KafkaSettings(bootstrap=frozen_broker.address))
    # The first revocation is logged while the worker joins its group, so
    # the close of its consumer waits for the frozen broker's response.
    feedback.start()
    wait_for_log_line(feedback, "partitions revoked", 30)

    exit_status, log = stop_on_frozen_broker(feedback, frozen_broker)

    assert exit_status == 0, log
    assert FROZEN_GIVE_UP_LINE in log
    assert "Traceback" not in log


def test_worker_stops_during_frozen_start_up(
    frozen_broker: LocalServer,
    make_worker: Callable[[KafkaSettings], FeedbackWorker],
) -> None:
    feedback = make_worker(KafkaSettings(bootstrap=frozen_broker.address))
    broker_pid = frozen_broker.pid()
    assert broker_pid is not None
    # Frozen before the worker starts, the broker accepts the connection of
    # the start-up's topic check but never responds to its metadata request.
    os.kill(broker_pid, signal.SIGSTOP)
    feedback.start()
    deadline = time.monotonic() + 30
    while "feedback app starting" not in feedback.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    # The line is logged just before the topic check, so the signal waits a
    # little to land during it.
    time.sleep(0.5)

    assert feedback.process is not None
    feedback.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    try:
        exit_status: int | None = feedback.process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        exit_status = None
    elapsed = time.monotonic() - signalled
    log = feedback.log()

    assert exit_status == 0, log
    assert elapsed < STOP_TIMEOUT_SECONDS
    assert "stopped during start-up reason=SIGTERM" in log
    assert "Traceback" not in log


def wait_for_log_line(feedback: FeedbackWorker, text: str, timeout: float) -> None:
    """Poll the worker's log until it contains ``text``, for at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while text not in feedback.log() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert text in feedback.log(), feedback.log()


def handles_sigterm(pid: int) -> bool:
    """Return whether a process has its own handler for SIGTERM."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def test_worker_exits_0_on_sigterm_while_loading_modules(
    worker: FeedbackWorker,
) -> None:
    worker.start()
    assert worker.process is not None
    deadline = time.monotonic() + 30
    while not handles_sigterm(worker.process.pid) and time.monotonic() < deadline:
        time.sleep(0.001)

    worker.process.send_signal(signal.SIGTERM)
    maps_when_signalled = Path(f"/proc/{worker.process.pid}/maps").read_text()
    exit_status = worker.process.wait(timeout=30)
    log = worker.log()

    # The handler is in place within milliseconds of the launch, before the
    # Kafka client's extension loads, which takes a tenth of a second more.
    assert "confluent_kafka" not in maps_when_signalled
    assert exit_status == 0, log
    assert "stopped during start-up reason=SIGTERM" in log
    assert "Traceback" not in log


def test_worker_exits_0_on_sigterm_before_faust_starts(
    worker: FeedbackWorker,
) -> None:
    worker.start()
    wait_for_log_line(worker, "feedback app starting", 30)
    # The start-up checks on the local broker and Redis take a few
    # milliseconds, so the signal lands after them, before the Faust worker
    # has started.
    time.sleep(0.1)

    assert worker.process is not None
    worker.process.send_signal(signal.SIGTERM)
    exit_status = worker.process.wait(timeout=30)
    log = worker.log()

    assert exit_status == 0, log
    assert "feedback app stopped" in log
    assert "Traceback" not in log


def test_worker_exits_0_on_second_sigterm_while_exiting(
    worker: FeedbackWorker,
) -> None:
    worker.start()
    wait_for_log_line(worker, "partitions assigned", 30)
    assert worker.process is not None
    worker.process.send_signal(signal.SIGTERM)
    # The line is written after the event loop has closed, while the process
    # finishes its exit.
    wait_for_log_line(worker, "feedback app stopped", 30)

    worker.process.send_signal(signal.SIGTERM)
    exit_status = worker.process.wait(timeout=30)

    assert exit_status == 0, worker.log()


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="parent death signal is Linux only"
)
def test_worker_exits_0_without_traceback_when_its_demo_is_killed(
    tmp_path: Path,
) -> None:
    # The broker and redis-server die with the parent, as in a killed demo,
    # while the worker stops: its last commit and the close of its Kafka
    # consumer meet a broker that refuses connections.
    killed = kill_demo_parent("feedback", tmp_path)

    assert killed.exit_status == 0, killed.log
    assert "parent process exited, stopping signal=SIGTERM" in killed.log
    assert "Traceback" not in killed.log
    assert "CancelledError" not in killed.log
