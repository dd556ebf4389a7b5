"""Kill -9 of the hot-path process mid-replay of the REES46 sample.

The process is killed while it replays the committed sample, then restarted.
Its final Redis state must equal a clean single pass over the same events:
every key, field and score, and every feature of every user and item.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from schemas.events import Event
from services.common.kafka import consumer_config, producer_config
from services.common.redis_features import EventPosition, FeatureStore
from services.common.settings import KafkaSettings, RedisSettings
from services.features.catalog import CatalogWriter
from services.replay.datasets import COMMITTED_DATA_DIR, load_dataset

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BATCH_SIZE = 100
# The hot path imports its stage from tests/, which it finds from here.
REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sample() -> Any:
    return load_dataset("rees46", COMMITTED_DATA_DIR)


def hot_path_env(
    kafka: KafkaSettings,
    redis_url: str,
    prefix: str,
    topics: dict[str, str],
    group: str,
) -> dict[str, str]:
    return {
        **os.environ,
        "CARTWHEEL_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "CARTWHEEL_REDIS_URL": redis_url,
        "CARTWHEEL_REDIS_KEY_PREFIX": prefix,
        "CARTWHEEL_TOPIC_EVENTS": topics["events"],
        "CARTWHEEL_TOPIC_DEAD_LETTERS": topics["dlq"],
        "CARTWHEEL_TOPIC_TRAINING_EXAMPLES": topics["training"],
        "CARTWHEEL_TOPIC_PARTITIONS": "1",
        "CARTWHEEL_HOTPATH_GROUP_ID": group,
        "CARTWHEEL_HOTPATH_BATCH_SIZE": str(BATCH_SIZE),
        "CARTWHEEL_HOTPATH_METRICS_PORT": "0",
        "CARTWHEEL_HOTPATH_LOG_LEVEL": "WARNING",
        # The state under test is the feature store's, so the stage is idle.
        "CARTWHEEL_HOTPATH_STAGES": '["tests.integration.idle_stage:build"]',
    }


def start_hot_path(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.hotpath"],
        env=env,
        cwd=REPOSITORY,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def applied_count(client: redis.Redis, prefix: str) -> int:
    totals = client.hvals(f"{prefix}:{{g}}:totals")
    return sum(int(value) for value in totals)


def committed_offset(kafka: KafkaSettings, group: str, topic: str) -> int:
    probe = Consumer(consumer_config(kafka, group))
    try:
        offsets = probe.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        probe.close()
    return max(offsets[0].offset, 0)


def snapshot_all(client: redis.Redis, prefix: str) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for key in client.scan_iter(f"{prefix}:*", count=1000):
        name = key.decode()[len(prefix) :]
        kind = client.type(key)
        if kind == b"hash":
            state[name] = client.hgetall(key)
        elif kind == b"zset":
            state[name] = client.zrange(key, 0, -1, withscores=True)
        else:
            state[name] = client.dump(key)
    return state


def test_state_after_kill_and_restart_equals_clean_pass(
    sample: Any,
    kafka_settings: KafkaSettings,
    redis_url: str,
    redis_client: redis.Redis,
    redis_settings: RedisSettings,
    make_topic: Callable[..., str],
    unique_name: Callable[[str], str],
) -> None:
    events: list[Event] = sample.events
    topics = {
        "events": make_topic("events", 1),
        "dlq": make_topic("dlq", 1),
        "training": make_topic("training", 1),
    }
    group = unique_name("hotpath")
    prefix = redis_settings.key_prefix
    clean_prefix = prefix + "c"
    for key_prefix in (prefix, clean_prefix):
        writer = CatalogWriter(redis_client, key_prefix)
        for record in sample.items:
            writer.write(record)
    producer = Producer(producer_config(kafka_settings))
    for event in events:
        producer.produce(
            topics["events"],
            key=event.user_id.encode(),
            value=event.model_dump_json(exclude_none=True).encode(),
        )
        producer.poll(0)
    producer.flush(30)
    env = hot_path_env(kafka_settings, redis_url, prefix, topics, group)

    # First run: kill -9 once about a third of the events are applied.
    process = start_hot_path(env)
    deadline = time.monotonic() + 60
    while applied_count(redis_client, prefix) < len(events) // 3:
        assert time.monotonic() < deadline, "the hot path made no progress"
        assert process.poll() is None, "the hot path exited early"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    applied_at_kill = applied_count(redis_client, prefix)
    committed_at_kill = committed_offset(kafka_settings, group, topics["events"])

    # Second run: finish the replay, then stop gracefully.
    process = start_hot_path(env)
    deadline = time.monotonic() + 90
    while committed_offset(kafka_settings, group, topics["events"]) < len(events):
        assert time.monotonic() < deadline, "the restarted hot path did not finish"
        assert process.poll() is None, "the restarted hot path exited"
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    process.wait(20)

    # Clean single pass with the same positions.
    clean = FeatureStore(redis_client, clean_prefix)
    for start in range(0, len(events), 200):
        chunk = events[start : start + 200]
        positions = [EventPosition(0, start + i) for i in range(len(chunk))]
        clean.apply_batch(chunk, positions)

    assert committed_at_kill < len(events)
    assert applied_at_kill < len(events)
    assert snapshot_all(redis_client, prefix) == snapshot_all(
        redis_client, clean_prefix
    )
    replayed = FeatureStore(redis_client, prefix)
    last_time = events[-1].event_timestamp
    items = sorted({event.item_id for event in events})
    items_of_user: dict[str, set[str]] = {}
    for event in events:
        items_of_user.setdefault(event.user_id, set()).add(event.item_id)
    for user_id, user_items in sorted(items_of_user.items()):
        got = replayed.read(user_id, sorted(user_items), at=last_time)
        want = clean.read(user_id, sorted(user_items), at=last_time)
        assert got.user == want.user, user_id
        assert got.items == want.items, user_id
        assert got.profile == want.profile, user_id
    for start in range(0, len(items), 500):
        chunk = items[start : start + 500]
        assert (
            replayed.read("nobody", chunk, at=last_time).items
            == clean.read("nobody", chunk, at=last_time).items
        )
