"""Redis outage mid-stream: the hot path retries, commits nothing, loses nothing.

It also logs the outage in a few lines, however many attempts fail.

The test runs its own redis-server with an fsync-always append-only file, so
stopping and restarting it keeps the data, as a production Redis with
persistence would. The session's redis-server is not touched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from services.common.kafka import consumer_config, producer_config
from services.common.redis_features import EventPosition, FeatureStore
from services.common.settings import KafkaSettings, RedisSettings, TopicSettings
from services.hotpath import metrics
from services.hotpath.__main__ import build_consumer
from services.hotpath.settings import HotPathSettings
from services.replay.datasets import COMMITTED_DATA_DIR, load_dataset
from tests.persistent_redis import PersistentRedis

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENT_COUNT = 3000
OUTAGE_SECONDS = 4.0


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[PersistentRedis]:
    server = PersistentRedis(tmp_path)
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()


def committed_offset(kafka: KafkaSettings, group: str, topic: str) -> int:
    probe = Consumer(consumer_config(kafka, group))
    try:
        offsets = probe.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        probe.close()
    return max(offsets[0].offset, 0)


def applied_count(client: redis.Redis, prefix: str) -> int:
    try:
        return sum(int(v) for v in client.hvals(f"{prefix}:{{g}}:totals"))
    except redis.exceptions.ConnectionError:
        return 0


def snapshot_all(client: redis.Redis, prefix: str) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for key in client.scan_iter(f"{prefix}:*", count=1000):
        name = key.decode()[len(prefix) :]
        if client.type(key) == b"hash":
            state[name] = client.hgetall(key)
        else:
            state[name] = client.zrange(key, 0, -1, withscores=True)
    return state


def test_redis_outage_is_retried_without_commit_or_loss(
    own_redis: PersistentRedis,
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    unique_name: Callable[[str], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = load_dataset("rees46", COMMITTED_DATA_DIR).events[:EVENT_COUNT]
    topics = TopicSettings(
        events=make_topic("events", 1),
        dead_letters=make_topic("dlq", 1),
        training_examples=make_topic("training", 1),
        partitions=1,
    )
    settings = HotPathSettings(
        kafka=kafka_settings,
        redis=RedisSettings(url=own_redis.url, key_prefix="outage"),
        topics=topics,
        group_id=unique_name("hotpath"),
        batch_size=50,
        poll_timeout_seconds=0.2,
        retry_initial_seconds=0.1,
        retry_max_seconds=1.0,
        metrics_port=0,
    )
    producer = Producer(producer_config(kafka_settings))
    for event in events:
        producer.produce(
            topics.events,
            key=event.user_id.encode(),
            value=event.model_dump_json(exclude_none=True).encode(),
        )
        producer.poll(0)
    producer.flush(30)
    client = redis.Redis.from_url(own_redis.url)
    retries_before = metrics.RETRIES.labels("redis")._value.get()
    hot_path = build_consumer(settings, stages=[])
    worker = threading.Thread(target=hot_path.run)
    caplog.set_level(logging.INFO, logger="services.hotpath.consumer")
    worker.start()

    try:
        deadline = time.monotonic() + 60
        while applied_count(client, "outage") < EVENT_COUNT // 4:
            assert time.monotonic() < deadline, "the hot path made no progress"
            time.sleep(0.005)
        own_redis.stop()
        time.sleep(0.5)
        committed_during = committed_offset(
            kafka_settings, settings.group_id, topics.events
        )
        time.sleep(OUTAGE_SECONDS)
        committed_after = committed_offset(
            kafka_settings, settings.group_id, topics.events
        )
        own_redis.start()
        deadline = time.monotonic() + 60
        while (
            committed_offset(kafka_settings, settings.group_id, topics.events)
            < EVENT_COUNT
        ):
            assert time.monotonic() < deadline, "the hot path did not resume"
            time.sleep(0.2)
    finally:
        hot_path.stop()
        worker.join(30)

    clean = FeatureStore(client, "clean")
    for start in range(0, len(events), 500):
        chunk = events[start : start + 500]
        clean.apply_batch(
            chunk, [EventPosition(0, start + i) for i in range(len(chunk))]
        )

    retries = metrics.RETRIES.labels("redis")._value.get() - retries_before
    lines = [
        r.getMessage() for r in caplog.records if r.name == "services.hotpath.consumer"
    ]
    started = [m for m in lines if m.startswith("redis failed, retrying batch ")]
    reminders = [m for m in lines if m.startswith("redis still failing")]
    recovered = [m for m in lines if m.startswith("redis recovered, batch succeeded")]
    assert committed_during < EVENT_COUNT
    assert committed_after == committed_during
    # Seconds of backoff from 0.1 s to 1 s make several attempts, and a
    # reminder is due only after a minute of outage.
    assert retries > 3
    assert len(started) == 1
    assert len(started) + len(reminders) < retries
    assert len(recovered) == 1
    assert f"failed_attempts={retries:.0f}" in recovered[0]
    assert snapshot_all(client, "outage") == snapshot_all(client, "clean")
