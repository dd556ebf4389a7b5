"""The trainer against the real broker and redis-server: lock, refresh, announce."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import torch
from confluent_kafka import Consumer, Producer

from models.multitask.synthetic import generate_examples
from models.registry import ModelAnnouncement, ModelRegistry
from schemas.training import TrainingExample
from services.common.kafka import consumer_config, producer_config
from services.common.retrain import request_retrain
from services.common.settings import KafkaSettings, RedisSettings, TopicSettings
from services.trainer.__main__ import build_service
from services.trainer.announcer import ModelAnnouncer
from services.trainer.lock import TrainingLock
from services.trainer.metrics import EXAMPLES_INVALID
from services.trainer.reader import ExampleReader
from services.trainer.service import TrainerService
from services.trainer.settings import TrainerSettings
from services.trainer.trainer import Trainer
from services.trainer.window import ExampleWindow

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _settings(tmp_path: Path, **overrides: Any) -> TrainerSettings:
    values: dict[str, Any] = {
        "registry_dir": tmp_path / "registry",
        "min_examples": 100,
        "embedding_dim": 8,
        "expert_count": 2,
        "expert_width": 16,
        "tower_width": 8,
        "epochs": 6,
        "batch_size": 256,
        "learning_rate": 0.01,
        "metrics_port": 0,
    }
    values.update(overrides)
    return TrainerSettings(**values)


def _produce(kafka: KafkaSettings, topic: str, examples: list[TrainingExample]) -> None:
    producer = Producer(producer_config(kafka))
    for example in examples:
        value = example.model_dump_json().encode()
        producer.produce(topic, key=example.user_id.encode(), value=value)
    producer.produce(topic, key=b"bad", value=b"{not a training example")
    assert producer.flush(15) == 0


def _read_announcements(kafka: KafkaSettings, topic: str) -> list[ModelAnnouncement]:
    consumer = Consumer(consumer_config(kafka, f"check-{topic}"))
    consumer.subscribe([topic])
    found = []
    try:
        for message in consumer.consume(10, timeout=10):
            if message.error() is None:
                found.append(ModelAnnouncement.model_validate_json(message.value()))
    finally:
        consumer.close()
    return found


def test_lock_admits_one_trainer_at_a_time(
    redis_client: redis.Redis, redis_settings: RedisSettings
) -> None:
    key = f"{redis_settings.key_prefix}:trainer:lock:ranker"
    first = TrainingLock(redis_client, key, ttl_seconds=30)
    second = TrainingLock(redis_client, key, ttl_seconds=30)

    assert first.acquire()
    assert not second.acquire()
    second.release()
    assert redis_client.exists(key) == 1
    first.release()
    assert second.acquire()


def test_lock_renewal_reports_lost_lock(
    redis_client: redis.Redis, redis_settings: RedisSettings
) -> None:
    key = f"{redis_settings.key_prefix}:trainer:lock:ranker"
    lock = TrainingLock(redis_client, key, ttl_seconds=30)
    assert lock.acquire()
    assert lock.renew()

    redis_client.set(key, "someone-else")

    assert not lock.renew()
    lock.release()
    assert redis_client.get(key) == b"someone-else"


def _loaded_loop(
    settings: TrainerSettings,
    redis_client: redis.Redis,
    *,
    refresh_interval_seconds: float,
    clock: Callable[[], float],
) -> tuple[TrainerService, ExampleWindow, TrainingLock]:
    """Return a trainer loop whose window contains every example on the topic.

    Its reader is closed, so that ``step`` refreshes on that window only.
    """
    lock = TrainingLock(redis_client, f"{settings.redis.key_prefix}:lock", 30)
    announcer = ModelAnnouncer(settings.kafka, settings.topics.models)
    reader = ExampleReader(
        settings.kafka, settings.topics.training_examples, 1e10, "trainer-test"
    )
    window = ExampleWindow(1e10, 100_000)
    reader.read_available(window, timeout_seconds=30)
    reader.close()
    service = TrainerService(
        Trainer(
            settings, ModelRegistry(settings.registry_dir), announcer.announce, lock
        ),
        reader,
        window,
        lock,
        redis_client,
        settings.redis.key_prefix,
        refresh_interval_seconds=refresh_interval_seconds,
        retrain_poll_seconds=1,
        clock=clock,
    )
    return service, window, lock


def test_retrain_request_refreshes_and_announces(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    redis_client: redis.Redis,
    redis_settings: RedisSettings,
    make_topic: Callable[..., str],
) -> None:
    examples_topic = make_topic("training-examples", partitions=2)
    models_topic = make_topic("models", partitions=1, is_compacted=True)
    examples = generate_examples(2000, user_count=50, item_count=120)
    _produce(kafka_settings, examples_topic, examples)
    topics = TopicSettings(training_examples=examples_topic, models=models_topic)
    settings = _settings(
        tmp_path, kafka=kafka_settings, redis=redis_settings, topics=topics
    )
    registry = ModelRegistry(settings.registry_dir)
    service, window, lock = _loaded_loop(
        settings, redis_client, refresh_interval_seconds=3600, clock=lambda: 0.0
    )
    request_retrain(redis_client, redis_settings.key_prefix, "drift", datetime.now(UTC))

    result = service.step()

    assert len(window) == len(examples)
    assert result is not None
    assert result.outcome == "promoted"
    announcements = _read_announcements(kafka_settings, models_topic)
    assert [a.model_version for a in announcements] == [result.model_version]
    assert announcements[0].artifact_uri == str(
        registry.path_of(str(result.model_version)).resolve()
    )
    assert registry.champion_version("ranker") == result.model_version
    assert redis_client.exists(lock.key) == 0


def test_step_does_nothing_while_another_trainer_holds_the_lock(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    redis_client: redis.Redis,
    redis_settings: RedisSettings,
    make_topic: Callable[..., str],
) -> None:
    examples_topic = make_topic("training-examples", partitions=1)
    settings = _settings(tmp_path)
    key = f"{redis_settings.key_prefix}:lock"
    holder = TrainingLock(redis_client, key, 30)
    assert holder.acquire()
    lock = TrainingLock(redis_client, key, 30)
    reader = ExampleReader(kafka_settings, examples_topic, 1e10, "trainer-test")
    window = ExampleWindow(1e10, 1000)
    for example in generate_examples(300):
        window.add(example)
    service = TrainerService(
        Trainer(settings, ModelRegistry(settings.registry_dir), None, lock),
        reader,
        window,
        lock,
        redis_client,
        redis_settings.key_prefix,
        refresh_interval_seconds=1,
        retrain_poll_seconds=1,
        clock=lambda: 10.0,
    )
    request_retrain(redis_client, redis_settings.key_prefix, "drift", datetime.now(UTC))

    result = service.step()

    reader.close()
    assert result is None
    assert ModelRegistry(settings.registry_dir).versions("ranker") == []
    pending = redis_client.get(f"{redis_settings.key_prefix}:retrain:request")
    assert pending is not None
    assert json.loads(pending)["reason"] == "drift"


def _service_settings(
    tmp_path: Path,
    kafka: KafkaSettings,
    redis_settings: RedisSettings,
    make_topic: Callable[..., str],
) -> TrainerSettings:
    """Return trainer settings on new training-examples and models topics."""
    topics = TopicSettings(
        training_examples=make_topic("training-examples", partitions=2),
        models=make_topic("models", partitions=1, is_compacted=True),
        partitions=2,
    )
    return _settings(tmp_path, kafka=kafka, redis=redis_settings, topics=topics)


def test_reader_reads_from_first_offset_when_window_reaches_before_1970(
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = make_topic("training-examples")
    examples = generate_examples(50)
    _produce(kafka_settings, topic, examples)
    window = ExampleWindow(1e10, 1000)

    with caplog.at_level(logging.WARNING, logger="services.trainer.reader"):
        reader = ExampleReader(kafka_settings, topic, 1e10, "trainer-test")
        reader.read_available(window, 15)
        reader.close()

    assert "offset lookup by time failed" not in caplog.text
    assert len(window) == len(examples)


def test_build_service_wires_a_runnable_trainer(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    redis_settings: RedisSettings,
    make_topic: Callable[..., str],
) -> None:
    settings = _service_settings(tmp_path, kafka_settings, redis_settings, make_topic)
    service = build_service(settings)
    service.stop()

    service.run()

    assert service.step() is None


def test_waiting_request_trains_on_whole_topic(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    redis_settings: RedisSettings,
    redis_client: redis.Redis,
    make_topic: Callable[..., str],
) -> None:
    topics = TopicSettings(
        training_examples=make_topic("training-examples", partitions=2),
        models=make_topic("models", partitions=1, is_compacted=True),
        partitions=2,
    )
    examples = generate_examples(2000, user_count=50, item_count=120)
    _produce(kafka_settings, topics.training_examples, examples)
    request_retrain(redis_client, redis_settings.key_prefix, "drift", datetime.now(UTC))
    settings = _settings(
        tmp_path,
        kafka=kafka_settings,
        redis=redis_settings,
        topics=topics,
        refresh_interval_seconds=3600,
        retrain_poll_seconds=1,
    )
    service = build_service(settings)
    runner = threading.Thread(target=service.run, daemon=True)
    runner.start()
    deadline = time.monotonic() + 120
    registry = ModelRegistry(settings.registry_dir)
    while registry.champion_version("ranker") is None and time.monotonic() < deadline:
        time.sleep(0.5)
    service.stop()
    runner.join(30)

    champion = registry.load_champion("ranker")
    assert champion is not None
    assert champion.metadata.data_window.examples == len(examples)


def test_build_service_announces_champion(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    redis_settings: RedisSettings,
    make_topic: Callable[..., str],
) -> None:
    settings = _service_settings(tmp_path, kafka_settings, redis_settings, make_topic)
    topics = settings.topics
    registry = ModelRegistry(settings.registry_dir)
    examples = generate_examples(2000, user_count=50, item_count=120)
    # A champion from before the broker lost its topics, which are empty now.
    champion = Trainer(settings, registry).refresh(examples, "earlier run")

    build_service(settings).stop()

    announcements = _read_announcements(kafka_settings, topics.models)
    assert [a.model_version for a in announcements] == [champion.model_version]


def _truncate_weights(registry: ModelRegistry, version: str) -> Path:
    weights = registry.path_of(version) / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return weights


def _garble_champion_file(registry: ModelRegistry, version: str) -> Path:
    champion_file = registry.champion_path("ranker")
    champion_file.write_bytes(b"\xff\xfe\x00")
    return champion_file


@pytest.mark.parametrize("damage", [_truncate_weights, _garble_champion_file])
def test_build_service_does_not_announce_unloadable_champion(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    redis_settings: RedisSettings,
    make_topic: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[ModelRegistry, str], Path],
) -> None:
    settings = _service_settings(tmp_path, kafka_settings, redis_settings, make_topic)
    registry = ModelRegistry(settings.registry_dir)
    examples = generate_examples(2000, user_count=50, item_count=120)
    champion = Trainer(settings, registry).refresh(examples, "earlier run")
    damaged = damage(registry, str(champion.model_version))

    with caplog.at_level(logging.INFO):
        build_service(settings).stop()

    assert _read_announcements(kafka_settings, settings.topics.models) == []
    assert "champion announced at start" not in caplog.text
    [failure] = [r for r in caplog.records if "champion failed" in r.getMessage()]
    assert failure.exc_info is None
    assert str(damaged) in failure.getMessage()


def test_reader_skips_an_example_from_the_far_future(
    kafka_settings: KafkaSettings, make_topic: Callable[..., str]
) -> None:
    topic = make_topic("training-examples", partitions=1)
    [example] = generate_examples(1)
    future = example.model_copy(
        update={
            "event_id": "from-9999",
            "event_time": datetime(9999, 12, 31, tzinfo=UTC),
        }
    )
    _produce(kafka_settings, topic, [future, example])
    reader = ExampleReader(kafka_settings, topic, 1e10, "trainer-test")
    window = ExampleWindow(1e10, 100)
    invalid_before = EXAMPLES_INVALID._value.get()

    reader.read_available(window, timeout_seconds=30)

    reader.close()
    assert [kept.event_id for kept in window.snapshot()] == [example.event_id]
    # The far-future example and the malformed message that _produce adds.
    assert EXAMPLES_INVALID._value.get() == invalid_before + 2


def _corrupt_champion_service(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    redis_client: redis.Redis,
    redis_settings: RedisSettings,
    make_topic: Callable[..., str],
    **overrides: Any,
) -> tuple[TrainerService, list[float], TrainerSettings, str]:
    """Return a loaded trainer loop whose champion's weights are truncated.

    Also returns the loop's clock, its settings and the corrupt version.
    """
    settings = _service_settings(tmp_path, kafka_settings, redis_settings, make_topic)
    settings = settings.model_copy(update=overrides)
    examples = generate_examples(2000, user_count=50, item_count=120)
    _produce(kafka_settings, settings.topics.training_examples, examples)
    registry = ModelRegistry(settings.registry_dir)
    first = Trainer(settings.model_copy(update={"min_click_auc": 0.0}), registry)
    corrupt = str(first.refresh(examples, "earlier run").model_version)
    weights = registry.path_of(corrupt) / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    now = [0.0]
    service, _, _ = _loaded_loop(
        settings, redis_client, refresh_interval_seconds=60, clock=lambda: now[0]
    )
    return service, now, settings, corrupt


def _scheduled_steps(
    service: TrainerService, now: list[float], count: int
) -> list[str | None]:
    """Run ``count`` scheduled refreshes on an unchanged window; return outcomes."""
    outcomes = []
    for _ in range(count):
        now[0] += 61
        result = service.step()
        outcomes.append(result.outcome if result is not None else None)
    return outcomes


def test_corrupt_champion_replaced_once_and_announced(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    redis_client: redis.Redis,
    redis_settings: RedisSettings,
    make_topic: Callable[..., str],
) -> None:
    service, now, settings, corrupt = _corrupt_champion_service(
        tmp_path, kafka_settings, redis_client, redis_settings, make_topic
    )
    registry = ModelRegistry(settings.registry_dir)

    outcomes = _scheduled_steps(service, now, 3)

    champion = registry.champion_version("ranker")
    assert outcomes == ["promoted", "skipped", "skipped"]
    assert champion is not None
    assert champion != corrupt
    assert registry.load_champion("ranker") is not None
    announced = _read_announcements(kafka_settings, settings.topics.models)
    assert [a.model_version for a in announced] == [champion]


def test_rejected_challenger_trained_once_per_window(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    redis_client: redis.Redis,
    redis_settings: RedisSettings,
    make_topic: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # No challenger reaches a click AUC of 1, so each one is rejected.
    service, now, settings, corrupt = _corrupt_champion_service(
        tmp_path,
        kafka_settings,
        redis_client,
        redis_settings,
        make_topic,
        min_click_auc=1.0,
    )

    with caplog.at_level(logging.INFO, logger="services.trainer"):
        outcomes = _scheduled_steps(service, now, 3)

    messages = [record.getMessage() for record in caplog.records]
    assert outcomes == ["rejected", "skipped", "skipped"]
    assert sum(m.startswith("challenger trained") for m in messages) == 1
    assert sum(m.startswith("champion failed to load") for m in messages) == 1
    assert ModelRegistry(settings.registry_dir).champion_version("ranker") == corrupt
    assert _read_announcements(kafka_settings, settings.topics.models) == []
    assert redis_client.exists(f"{redis_settings.key_prefix}:lock") == 0
