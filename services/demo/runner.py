"""Run the whole pipeline on a real dataset and evaluate what it recommended.

The demo starts a private broker and redis-server on free loopback ports,
creates the topics and starts every service as a child process. It replays
the dataset in event-time order in two slices, because the first slice gives
the trainer the data for the first multi-task model. Then it evaluates the
published slates against baselines and prints a summary. Everything it started
is stopped on the way out, also on Ctrl-C.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from pydantic_settings import BaseSettings
from tqdm import tqdm

from models.registry import ModelAnnouncement
from schemas.events import Event
from services.api.settings import ApiSettings
from services.common.errors import InfrastructureError, InvalidSettingsError
from services.common.kafka import consumer_config, create_topics, standard_topics
from services.common.lifecycle import ensure_writable_directory
from services.common.retrain import request_retrain
from services.common.settings import (
    KafkaSettings,
    RedisSettings,
    TopicSettings,
    join_error_lines,
    load_settings,
)
from services.demo.progress import TriggerTally
from services.demo.settings import DemoSettings
from services.demo.state_dir import DemoLock, clear_run_state
from services.demo.supervisor import Supervisor
from services.evaluation.consumer import read_topics
from services.evaluation.prequential import PrequentialEvaluator
from services.evaluation.report import summary_lines, write_report
from services.evaluation.settings import EvaluationSettings
from services.features.settings import CatalogSettings
from services.feedback.settings import FeedbackSettings
from services.hotpath.__main__ import resolve_stage_factories
from services.hotpath.settings import HotPathSettings
from services.infra import (
    LocalServer,
    find_free_ports,
    start_broker,
    start_redis,
)
from services.learner.settings import LearnerSettings
from services.replay.datasets import Dataset, load_dataset
from services.replay.generated import generate_catalog
from services.replay.replayer import Replayer, verify_replay_topics
from services.replay.settings import Settings as ReplaySettings
from services.scorer.settings import ScorerSettings
from services.trainer.settings import TrainerSettings

__all__ = ["DemoRun", "run_demo"]

logger = logging.getLogger(__name__)

_SettingsT = TypeVar("_SettingsT", bound=BaseSettings)
_ResultT = TypeVar("_ResultT")

_MODEL_NAME = "ranker"

# The settings that the demo's child services load, each from its variables.
_SERVICE_SETTINGS: tuple[type[BaseSettings], ...] = (
    CatalogSettings,
    HotPathSettings,
    LearnerSettings,
    ScorerSettings,
    TrainerSettings,
    FeedbackSettings,
    ApiSettings,
)


@dataclass(frozen=True)
class DemoRun:
    """A replay request: a registered dataset, optionally read from another path."""

    dataset: str
    path: Path | None = None
    limit: int | None = None


@dataclass(frozen=True)
class _PipelineSettings:
    """Settings that the demo itself uses, aimed at the servers it starts."""

    kafka: KafkaSettings
    redis: RedisSettings
    topics: TopicSettings
    replay: ReplaySettings
    evaluation: EvaluationSettings


def run_demo(run: DemoRun, settings: DemoSettings) -> int:
    """Run the demo end to end and return the process exit status.

    Raises:
        InvalidSettingsError: a ``CARTWHEEL_*`` variable that the demo reads
            is invalid, its own or a child service's, or the state or report
            folder cannot be created and written. Nothing has been cleared or
            started then.
        DatasetFileError: the dataset's files are missing or invalid. This is
            raised before any server is started or any folder is created.
        DemoRunningError: another demo runs with the same state folder.
            Nothing has been cleared or started then.
    """
    state_dir = settings.state_dir.resolve()
    with DemoLock(state_dir) as lock:
        if lock.path.is_file():
            # A demo running here is reported before the slower checks. A new
            # folder is locked once those checks have created it.
            lock.acquire()
        return _run_locked(run, settings, state_dir, lock)


def _run_locked(
    run: DemoRun, settings: DemoSettings, state_dir: Path, lock: DemoLock
) -> int:
    """Check the settings and the dataset, then run the demo under ``lock``."""
    broker_port, redis_port = find_free_ports(2)
    pipeline = _load_pipeline_settings(
        LocalServer.tansu(state_dir, broker_port).address,
        LocalServer.redis(state_dir, redis_port).address,
        state_dir,
    )
    # A missing or invalid dataset must fail before any server is started.
    dataset, events = _load_events(run, pipeline.replay)
    # The report is written only after the whole replay, so a bad report
    # folder is caught here instead of after minutes of work. These checks
    # create the folders, so they come after the checks that create nothing.
    ensure_writable_directory(settings.state_dir, "CARTWHEEL_DEMO_STATE_DIR")
    ensure_writable_directory(settings.report_dir, "CARTWHEEL_DEMO_REPORT_DIR")

    lock.acquire()
    clear_run_state(state_dir)
    _say(f"starting a broker and redis-server under {state_dir}")
    broker = start_broker(state_dir, broker_port)
    redis_server: LocalServer | None = None
    try:
        redis_server = start_redis(state_dir, redis_port)
        return _run_pipeline(run, settings, pipeline, state_dir, dataset, events)
    finally:
        if redis_server is not None:
            redis_server.stop()
        broker.stop()
        _say("stopped the broker and redis-server")


def _load_pipeline_settings(
    broker_address: str, redis_address: str, state_dir: Path
) -> _PipelineSettings:
    """Read the demo's own settings, with the addresses of its servers.

    The demo replaces the bootstrap list, the Redis URL and the evaluator's
    score_from, so those variables are not read. The settings of every child
    service are checked too, so one run lists every invalid variable.

    Raises:
        InvalidSettingsError: a variable that the demo or a child service
            reads is invalid; every invalid variable is listed.
    """
    problems: list[str] = []
    redis_url = SecretStr(f"redis://{redis_address}/0")
    # A block that fails is replaced by its defaults with the demo's
    # addresses, so the blocks and children after it are still checked.
    kafka = _load_or_record(
        problems, KafkaSettings, bootstrap=broker_address
    ) or KafkaSettings.model_construct(bootstrap=broker_address)
    topics = _load_or_record(problems, TopicSettings) or TopicSettings.model_construct()
    redis_settings = _load_or_record(
        problems, RedisSettings, url=redis_url
    ) or RedisSettings.model_construct(url=redis_url)
    replay = _load_or_record(problems, ReplaySettings, kafka=kafka, topics=topics)
    # score_from is set once the dataset is split.
    evaluation = _load_or_record(
        problems, EvaluationSettings, kafka=kafka, topics=topics, score_from=None
    )
    problems.extend(_service_problems(kafka, redis_settings, topics, state_dir))
    if problems or replay is None or evaluation is None:
        raise InvalidSettingsError(join_error_lines(problems))
    return _PipelineSettings(
        kafka=kafka,
        redis=redis_settings,
        topics=topics,
        replay=replay,
        evaluation=evaluation,
    )


def _load_or_record(
    problems: list[str], settings_class: type[_SettingsT], **overrides: object
) -> _SettingsT | None:
    """Load ``settings_class``, or append its errors to ``problems`` and return None."""
    return _call_or_record(problems, load_settings, settings_class, **overrides)


def _call_or_record(
    problems: list[str], check: Callable[..., _ResultT], *args: Any, **kwargs: Any
) -> _ResultT | None:
    """Call ``check``, or record its settings error in ``problems`` and return None."""
    try:
        return check(*args, **kwargs)
    except InvalidSettingsError as exc:
        problems.append(str(exc))
        return None


def _service_problems(
    kafka: KafkaSettings,
    redis_settings: RedisSettings,
    topics: TopicSettings,
    state_dir: Path,
) -> list[str]:
    """Load every child service's settings as the child will, before any server.

    A child reads this process's environment with the values that the demo
    sets for it, so the same values are passed in here as overrides. An
    invalid variable then stops the demo with one line instead of a child
    that exits after the servers started.

    Returns:
        The error message of each child whose settings are invalid.
    """
    environment = _service_environment(kafka, redis_settings, state_dir, 0)
    shared = {"kafka": kafka, "redis": redis_settings, "topics": topics}
    problems: list[str] = []
    for settings_class in _SERVICE_SETTINGS:
        prefix = str(settings_class.model_config.get("env_prefix", ""))
        fields = settings_class.model_fields
        overrides: dict[str, object] = {
            name: value for name, value in shared.items() if name in fields
        }
        for variable, value in environment.items():
            name = variable.removeprefix(prefix).lower()
            if variable.startswith(prefix) and name in fields:
                overrides[name] = value
        if "scorer" in fields:
            # The API's nested scorer block would read the user's Kafka, Redis
            # and topic variables, which the demo replaces for its children.
            # Its other variables are checked with ScorerSettings itself.
            overrides["scorer"] = ScorerSettings.model_construct(
                kafka=kafka, redis=redis_settings, topics=topics
            )
        loaded = _load_or_record(problems, settings_class, **overrides)
        if isinstance(loaded, HotPathSettings):
            # A stage module that cannot be imported would stop the hot path
            # only after the servers started.
            _call_or_record(problems, resolve_stage_factories, loaded.stages)
    return problems


def _load_events(
    run: DemoRun, replay_settings: ReplaySettings
) -> tuple[Dataset, Sequence[Event]]:
    """Load the dataset and return it with the events to replay.

    Raises:
        ValueError: fewer than 2 events remain to replay.
    """
    dataset = load_dataset(
        run.dataset,
        replay_settings.data_dir,
        run.path,
        path_option="--path",
        data_dir_source="CARTWHEEL_REPLAY_DATA_DIR",
    )
    events = dataset.events[: run.limit] if run.limit else dataset.events
    if len(events) < 2:
        raise ValueError(f"dataset {run.dataset!r} has fewer than 2 events to replay")
    return dataset, events


def _run_pipeline(
    run: DemoRun,
    settings: DemoSettings,
    pipeline: _PipelineSettings,
    state_dir: Path,
    dataset: Dataset,
    events: Sequence[Event],
) -> int:
    kafka = pipeline.kafka
    redis_settings = pipeline.redis
    topics = pipeline.topics
    create_topics(kafka, standard_topics(topics))

    replay_settings = pipeline.replay
    split = max(1, int(len(events) * settings.warmup_fraction))
    _say(
        f"dataset {run.dataset}: {len(events)} events, {len(dataset.items)} items; "
        f"{split} events before the first model is trained"
    )

    environment = _service_environment(kafka, redis_settings, state_dir, split)
    metrics_url = (
        f"http://127.0.0.1:{environment['CARTWHEEL_TRAINER_METRICS_PORT']}/metrics"
    )
    with Supervisor(state_dir / "logs", environment) as supervisor:
        supervisor.start("catalog", "services.features")
        supervisor.start("hotpath", "services.hotpath")
        supervisor.start("trainer", "services.trainer")
        supervisor.start("feedback", "services.feedback")
        supervisor.start("api", "services.api")

        verify_replay_topics(replay_settings)
        replayer = Replayer(replay_settings, show_progress=False)
        try:
            generated = generate_catalog(
                dataset.events, dataset.items, seed=replay_settings.generated_seed
            )
            catalog = replayer.publish_catalog(
                [*dataset.items, *generated.promotions, *generated.reviews]
            )
            _say(
                f"catalog published: {dict(catalog)} (promotions and reviews generated)"
            )

            processed, elapsed, model_version = _replay_and_train(
                replayer,
                run.dataset,
                events,
                split,
                pipeline,
                settings,
                supervisor,
                metrics_url,
            )
        finally:
            replayer.close()
        _say(f"{processed} events turned into slates in {elapsed:.1f} s")

        _say("evaluating slates and baselines")
        evaluation = pipeline.evaluation.model_copy(
            update={"score_from": events[split].event_time}
        )
        evaluator = PrequentialEvaluator(evaluation)
        read = read_topics(evaluator, evaluation)
        result = evaluator.evaluate(processed / elapsed, skipped_records=read.malformed)
        files = write_report(result, settings.report_dir)

    lines = [
        f"first multi-task model: {model_version}",
        *summary_lines(result),
        f"report: {files.markdown.resolve()}",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _replay_and_train(
    replayer: Replayer,
    dataset: str,
    events: Sequence[Event],
    split: int,
    pipeline: _PipelineSettings,
    settings: DemoSettings,
    supervisor: Supervisor,
    metrics_url: str,
) -> tuple[int, float, str]:
    """Replay the warm-up slice, train the first model, then replay the rest.

    ``metrics_url`` is the trainer's metrics page, where the first refresh's
    outcome shows when it produced no model.

    Returns:
        The events published, the seconds from the first event until every
        one had its products slate, and the first model's version (or why
        there is none).
    """
    kafka = pipeline.kafka
    specs = standard_topics(pipeline.topics)
    partitions = {spec.name: spec.partitions for spec in specs}
    products = pipeline.topics.recommendations("products")
    counter = _SlateCounter(kafka, products, partitions[products])
    first_refresh = _FirstRefresh(
        kafka, pipeline.topics.models, partitions[pipeline.topics.models], metrics_url
    )
    try:
        started = time.monotonic()
        warmup = replayer.replay_events(events[:split], source=f"dataset:{dataset}")
        counter.wait_for(
            warmup.events_published,
            "warm-up slice",
            settings.catch_up_timeout_seconds,
            supervisor.check,
        )

        _say("training the first multi-task model on the warm-up slice")
        _request_training(pipeline.redis)
        model_version = first_refresh.wait(
            settings.training_timeout_seconds, supervisor.check
        )
        _say(f"first model: {model_version}")

        rest = replayer.replay_events(events[split:], source=f"dataset:{dataset}")
        processed = warmup.events_published + rest.events_published
        counter.wait_for(
            processed,
            "whole replay",
            settings.catch_up_timeout_seconds,
            supervisor.check,
        )
        return processed, time.monotonic() - started, model_version
    finally:
        counter.close()
        first_refresh.close()


def _request_training(redis_settings: RedisSettings) -> None:
    client = redis.Redis.from_url(redis_settings.url.get_secret_value())
    try:
        request_retrain(
            client,
            redis_settings.key_prefix,
            reason="demo warm-up finished",
            detected_at=datetime.now(UTC),
        )
    finally:
        client.close()


def _service_environment(
    kafka: KafkaSettings,
    redis_settings: RedisSettings,
    state_dir: Path,
    warmup_events: int,
) -> dict[str, str]:
    """Point every child at the demo's servers and give each a free metrics port.

    The ports are distinct: they are found while all are held. The trainer
    may train on half of the warm-up slice, so a short replay (``--limit``)
    still produces a first model.
    """
    hotpath, features, trainer, feedback, api = find_free_ports(5)
    return {
        "CARTWHEEL_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "CARTWHEEL_REDIS_URL": redis_settings.url.get_secret_value(),
        "CARTWHEEL_HOTPATH_METRICS_PORT": str(hotpath),
        "CARTWHEEL_FEATURES_METRICS_PORT": str(features),
        "CARTWHEEL_TRAINER_METRICS_PORT": str(trainer),
        "CARTWHEEL_FEEDBACK_METRICS_PORT": str(feedback),
        "CARTWHEEL_API_PORT": str(api),
        "CARTWHEEL_TRAINER_REGISTRY_DIR": str(state_dir / "models"),
        "CARTWHEEL_TRAINER_MODEL_NAME": _MODEL_NAME,
        "CARTWHEEL_TRAINER_MIN_EXAMPLES": str(min(1000, max(100, warmup_events // 2))),
        # A warm-up slice gives a few thousand examples: smaller batches and
        # more epochs give the first model enough gradient steps to learn.
        "CARTWHEEL_TRAINER_BATCH_SIZE": "256",
        "CARTWHEEL_TRAINER_EPOCHS": "4",
        "CARTWHEEL_LEARNER_CHECKPOINT_DIR": str(state_dir / "learner"),
        "CARTWHEEL_FEEDBACK_DATA_DIR": str(state_dir / "feedback"),
    }


def _reader_from_start(kafka: KafkaSettings, topic: str, partitions: int) -> Consumer:
    """Return a consumer of every partition of ``topic`` from its first message.

    The partitions are assigned directly, outside any consumer group. A group
    member that is not polled yet may have a rebalance pending, and closing
    it then waits for that rebalance without a timeout, so a demo stopped
    early by Ctrl-C or SIGTERM would hang in its clean-up.
    """
    group = f"cartwheel-demo-reader-{time.time_ns()}"
    consumer = Consumer(consumer_config(kafka, group, fetch_wait_ms=50))
    consumer.assign(
        [TopicPartition(topic, index, OFFSET_BEGINNING) for index in range(partitions)]
    )
    return consumer


class _SlateCounter:
    """Counts trigger events with a slate on one topic, with a progress bar."""

    def __init__(self, kafka: KafkaSettings, topic: str, partitions: int) -> None:
        self._consumer = _reader_from_start(kafka, topic, partitions)
        self._triggers = TriggerTally()

    def wait_for(
        self,
        expected: int,
        label: str,
        timeout_seconds: float,
        check: Callable[[], None],
    ) -> None:
        deadline = time.monotonic() + timeout_seconds
        with tqdm(
            total=expected,
            initial=len(self._triggers),
            desc=label,
            unit="slate",
            file=sys.stderr,
            # None turns the bar off when stderr is not a terminal (a log file).
            disable=None,
            mininterval=0.5,
        ) as progress:
            while len(self._triggers) < expected:
                if time.monotonic() > deadline:
                    raise InfrastructureError(
                        f"only {len(self._triggers)} of {expected} events got a "
                        f"slate within {timeout_seconds:.0f} s; see the service logs"
                    )
                check()
                messages = self._consumer.consume(1000, timeout=0.5)
                fresh = sum(
                    self._triggers.add(message.value())
                    for message in messages
                    if message.error() is None
                )
                progress.update(fresh)

    def close(self) -> None:
        self._consumer.close()


class _FirstRefresh:
    """Waits for the trainer's first refresh: a promoted model, or why there is none.

    A promotion shows on the ``models`` topic; any other outcome (skipped,
    rejected, failed) only in the trainer's refresh counter on /metrics.
    """

    def __init__(
        self, kafka: KafkaSettings, topic: str, partitions: int, metrics_url: str
    ) -> None:
        self._consumer = _reader_from_start(kafka, topic, partitions)
        self._metrics_url = metrics_url

    def wait(self, timeout_seconds: float, check: Callable[[], None]) -> str:
        """Return the promoted model_version, or ``"none: <outcome>"``."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            check()
            message = self._consumer.poll(0.5)
            if message is not None:
                error = message.error()
                if error is None:
                    announcement = ModelAnnouncement.model_validate_json(
                        message.value() or b""
                    )
                    return announcement.model_version
                if error.code() != KafkaError._PARTITION_EOF:
                    raise InfrastructureError(
                        f"reading model announcements failed: {error}"
                    )
            outcome = self._unpromoted_outcome()
            if outcome is not None:
                return f"none: the trainer's refresh was {outcome}"
        raise InfrastructureError(
            f"the trainer did not finish a refresh within {timeout_seconds:.0f} s; "
            "see the trainer's log"
        )

    def _unpromoted_outcome(self) -> str | None:
        try:
            text = httpx.get(self._metrics_url, timeout=2.0).text
        except httpx.HTTPError:
            return None
        for family in text_string_to_metric_families(text):
            if family.name != "cartwheel_trainer_refreshes":
                continue
            for sample in family.samples:
                outcome = sample.labels.get("outcome")
                is_total = sample.name.endswith("_total")
                if is_total and outcome != "promoted" and sample.value > 0:
                    return outcome
        return None

    def close(self) -> None:
        self._consumer.close()


def _say(line: str) -> None:
    sys.stderr.write(f"demo: {line}\n")
    sys.stderr.flush()
