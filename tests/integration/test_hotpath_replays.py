"""A second replay into topics created again: the earlier run's events are dropped."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest
import redis
from confluent_kafka import Producer

from schemas.events import Event
from services.common.kafka import producer_config
from services.common.settings import KafkaSettings, RedisSettings
from services.hotpath import metrics
from services.hotpath.__main__ import build_consumer
from services.hotpath.settings import HotPathSettings
from tests.integration.test_hotpath_consumer import (
    RecordingStage,
    event,
    hotpath_settings,
    run_until_committed,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def make_settings(
    kafka_settings: KafkaSettings,
    redis_settings: RedisSettings,
    make_topic: Callable[..., str],
    unique_name: Callable[[str], str],
) -> Callable[[], HotPathSettings]:
    """Return a factory of settings on a new topic and group, with one Redis prefix."""
    return lambda: hotpath_settings(
        kafka_settings, redis_settings, make_topic, unique_name("hotpath")
    )


@pytest.fixture
def cleanup(redis_client: redis.Redis, redis_settings: RedisSettings) -> Iterator[None]:
    yield
    for key in redis_client.scan_iter(f"{redis_settings.key_prefix}:*"):
        redis_client.delete(key)


def publish(settings: HotPathSettings, events: Sequence[Event]) -> None:
    producer = Producer(producer_config(settings.kafka))
    for item in events:
        producer.produce(
            settings.topics.events,
            key=item.user_id.encode(),
            value=item.model_dump_json(exclude_none=True).encode(),
        )
    producer.flush(10)


def replay(settings: HotPathSettings, events: Sequence[Event]) -> RecordingStage:
    """Publish ``events``, run a hot path until it committed them; return its stage."""
    publish(settings, events)
    stage = RecordingStage()
    hot_path = build_consumer(settings, stages=[stage])
    run_until_committed(hot_path, settings, len(events))
    hot_path.close()
    return stage


@pytest.mark.usefixtures("cleanup")
def test_second_replay_reaches_no_stage(
    make_settings: Callable[[], HotPathSettings],
) -> None:
    events = [
        event(f"e{i}", i, user_id=f"u{i % 3}", item_id=f"i{i % 4}") for i in range(8)
    ]
    first = replay(make_settings(), events)
    duplicates_before = metrics.DUPLICATE_EVENTS._value.get()

    # The same events at the same partitions and offsets, in a group without
    # commits, as after a broker lost its topics and groups but Redis did not.
    second = replay(make_settings(), events)

    assert sum(len(batch) for batch in first.batches) == len(events)
    assert second.batches == []
    assert metrics.DUPLICATE_EVENTS._value.get() == duplicates_before + len(events)
