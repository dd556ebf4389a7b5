"""Two hot-path processes sharing the events partitions through one group.

Both run the default stages (features, online learning, scoring) as deployed.
Once each owns half of the partitions, a slice of the REES46 sample is
published. Every event must then get exactly one products slate, from
whichever instance owns its partition.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, Producer

from services.common.kafka import (
    TopicSpec,
    consumer_config,
    create_topics,
    producer_config,
)
from services.common.settings import KafkaSettings, RedisSettings
from services.features.catalog import CatalogWriter
from services.replay.datasets import COMMITTED_DATA_DIR, load_dataset

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4
EVENT_COUNT = 600
SURFACES = ("products", "bundles", "promotions", "reviews")
_ASSIGNED = re.compile(r"partitions assigned topic=\S+ partitions=\[([0-9, ]*)\]")


@pytest.fixture(scope="module")
def sample() -> Any:
    return load_dataset("rees46", COMMITTED_DATA_DIR)


@pytest.fixture
def topics(
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    unique_name: Callable[[str], str],
) -> dict[str, str]:
    prefix = unique_name("recommendations")
    create_topics(
        kafka_settings,
        [TopicSpec(f"{prefix}.{surface}", PARTITIONS) for surface in SURFACES],
    )
    return {
        "events": make_topic("events", PARTITIONS),
        "dlq": make_topic("dlq", PARTITIONS),
        "training": make_topic("training", PARTITIONS),
        "models": make_topic("models", 1, is_compacted=True),
        "recommendations_prefix": prefix,
    }


@pytest.fixture
def instances(
    kafka_settings: KafkaSettings,
    redis_url: str,
    redis_settings: RedisSettings,
    topics: dict[str, str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> Iterator[list[tuple[subprocess.Popen[bytes], Path]]]:
    group = unique_name("hotpath")
    started = []
    for name in ("first", "second"):
        log_path = tmp_path / f"{name}.log"
        environment = {
            **os.environ,
            "CARTWHEEL_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
            "CARTWHEEL_REDIS_URL": redis_url,
            "CARTWHEEL_REDIS_KEY_PREFIX": redis_settings.key_prefix,
            "CARTWHEEL_TOPIC_EVENTS": topics["events"],
            "CARTWHEEL_TOPIC_DEAD_LETTERS": topics["dlq"],
            "CARTWHEEL_TOPIC_TRAINING_EXAMPLES": topics["training"],
            "CARTWHEEL_TOPIC_MODELS": topics["models"],
            "CARTWHEEL_TOPIC_RECOMMENDATIONS_PREFIX": topics["recommendations_prefix"],
            "CARTWHEEL_TOPIC_PARTITIONS": str(PARTITIONS),
            "CARTWHEEL_HOTPATH_GROUP_ID": group,
            "CARTWHEEL_HOTPATH_METRICS_PORT": "0",
            "CARTWHEEL_HOTPATH_LOG_LEVEL": "INFO",
            "CARTWHEEL_LEARNER_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
            "CARTWHEEL_LEARNER_INSTANCE_NAME": name,
        }
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "services.hotpath"],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append((process, log_path))
    yield started
    for process, _ in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process, _ in started:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def last_assignment(log_path: Path) -> list[int] | None:
    matches = _ASSIGNED.findall(log_path.read_text(errors="replace"))
    if not matches:
        return None
    return [int(part) for part in matches[-1].split(",") if part.strip()]


def wait_until_partitions_split(
    instances: list[tuple[subprocess.Popen[bytes], Path]],
) -> None:
    deadline = time.monotonic() + 60
    while True:
        for process, log_path in instances:
            assert process.poll() is None, log_path.read_text(errors="replace")
        assignments = [last_assignment(log_path) for _, log_path in instances]
        if all(a is not None and len(a) == PARTITIONS // 2 for a in assignments):
            return
        assert time.monotonic() < deadline, f"assignments never split: {assignments}"
        time.sleep(0.2)


def read_products_slates(
    kafka: KafkaSettings, topic: str, expected: int
) -> list[dict[str, Any]]:
    reader = Consumer(consumer_config(kafka, f"reader-{time.monotonic_ns()}"))
    reader.subscribe([topic])
    slates: list[dict[str, Any]] = []
    deadline = time.monotonic() + 120
    # Read past the expected count for a few seconds to catch duplicates.
    settle_until: float | None = None
    while time.monotonic() < deadline:
        for message in reader.consume(500, 0.5):
            if message.error() is None:
                slates.append(json.loads(message.value()))
        if len(slates) >= expected and settle_until is None:
            settle_until = time.monotonic() + 3
        if settle_until is not None and time.monotonic() > settle_until:
            break
    reader.close()
    return slates


def test_two_instances_give_each_event_one_slate(
    sample: Any,
    kafka_settings: KafkaSettings,
    redis_client: redis.Redis,
    redis_settings: RedisSettings,
    topics: dict[str, str],
    instances: list[tuple[subprocess.Popen[bytes], Path]],
) -> None:
    events = sample.events[:EVENT_COUNT]
    writer = CatalogWriter(redis_client, redis_settings.key_prefix)
    for record in sample.items:
        writer.write(record)
    wait_until_partitions_split(instances)

    producer = Producer(producer_config(kafka_settings))
    for event in events:
        producer.produce(
            topics["events"],
            key=event.user_id.encode(),
            value=event.model_dump_json(exclude_none=True).encode(),
        )
        producer.poll(0)
    producer.flush(30)
    slates = read_products_slates(
        kafka_settings, f"{topics['recommendations_prefix']}.products", len(events)
    )
    per_trigger = Counter(slate["trigger_event_id"] for slate in slates)
    partitions_per_instance = [last_assignment(log) for _, log in instances]

    assert set(per_trigger) == {event.event_id for event in events}
    assert max(per_trigger.values()) == 1
    assert len(slates) == len(events)
    assert sorted(p for a in partitions_per_instance for p in a or []) == list(
        range(PARTITIONS)
    )
