"""Hot-path consumer against the real broker and redis-server."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from schemas.events import Event, EventType
from services.common.kafka import consumer_config, producer_config
from services.common.redis_features import FeatureStore
from services.common.settings import KafkaSettings, RedisSettings, TopicSettings
from services.hotpath import metrics
from services.hotpath.__main__ import build_consumer
from services.hotpath.consumer import HotPathConsumer
from services.hotpath.settings import HotPathSettings
from services.hotpath.stages import AppliedEvent
from services.scorer.publisher import SlateDeliveryError

pytestmark = pytest.mark.integration

START = datetime(2019, 10, 1, tzinfo=UTC)


class RecordingStage:
    """Records every batch; raises on the calls listed in ``failing_calls``."""

    name = "recording"

    def __init__(self, failing_calls: Sequence[int] = ()) -> None:
        self.batches: list[list[AppliedEvent]] = []
        self.failing_calls = set(failing_calls)
        self.calls = 0
        self.starts = 0
        self.assignments: list[dict[int, int]] = []
        self.is_closed = False

    def start(self) -> None:
        self.starts += 1

    def assigned(self, resume_offsets: Mapping[int, int]) -> None:
        self.assignments.append(dict(resume_offsets))

    def process(self, batch: Sequence[AppliedEvent]) -> None:
        self.calls += 1
        if self.calls in self.failing_calls:
            raise RuntimeError("stage failed on purpose")
        self.batches.append(list(batch))

    def close(self) -> None:
        self.is_closed = True


def event(
    event_id: str, seconds: float, user_id: str = "u1", item_id: str = "a", **kw: Any
) -> Event:
    return Event(
        event_id=event_id,
        event_type=EventType(kw.pop("event_type", "click")),
        user_id=user_id,
        item_id=item_id,
        event_time=START + timedelta(seconds=seconds),
        **kw,
    )


def hotpath_settings(
    kafka_settings: KafkaSettings,
    redis_settings: RedisSettings,
    make_topic: Callable[..., str],
    group_id: str,
) -> HotPathSettings:
    """Return hot-path settings on new two-partition topics, with short waits."""
    topics = TopicSettings(
        events=make_topic("events", 2),
        dead_letters=make_topic("dlq", 2),
        training_examples=make_topic("training", 2),
        partitions=2,
    )
    return HotPathSettings(
        kafka=kafka_settings,
        redis=redis_settings,
        topics=topics,
        group_id=group_id,
        batch_size=50,
        poll_timeout_seconds=0.2,
        retry_initial_seconds=0.05,
        retry_max_seconds=0.2,
        metrics_port=0,
    )


@pytest.fixture
def settings(
    kafka_settings: KafkaSettings,
    redis_settings: RedisSettings,
    make_topic: Callable[..., str],
    unique_name: Callable[[str], str],
) -> HotPathSettings:
    return hotpath_settings(
        kafka_settings, redis_settings, make_topic, unique_name("hotpath")
    )


@pytest.fixture
def publish(settings: HotPathSettings) -> Callable[[Sequence[Event | bytes]], None]:
    producer = Producer(producer_config(settings.kafka))

    def send(messages: Sequence[Event | bytes]) -> None:
        for message in messages:
            if isinstance(message, Event):
                producer.produce(
                    settings.topics.events,
                    key=message.user_id.encode(),
                    value=message.model_dump_json(exclude_none=True).encode(),
                )
            else:
                producer.produce(settings.topics.events, key=b"u1", value=message)
        producer.flush(10)

    return send


@pytest.fixture
def cleanup(redis_client: redis.Redis, redis_settings: RedisSettings) -> Iterator[None]:
    yield
    for key in redis_client.scan_iter(f"{redis_settings.key_prefix}:*"):
        redis_client.delete(key)


def run_until_committed(
    hot_path: HotPathConsumer, settings: HotPathSettings, total: int
) -> int:
    """Poll until the group committed ``total`` messages; return the committed sum."""
    hot_path.subscribe()
    partitions = [TopicPartition(settings.topics.events, p) for p in range(2)]
    deadline = time.monotonic() + 40
    committed = 0
    while time.monotonic() < deadline:
        hot_path.poll_once()
        offsets = hot_path._consumer.committed(partitions, timeout=5)
        committed = sum(max(tp.offset, 0) for tp in offsets)
        if committed >= total:
            break
    return committed


def read_topic(kafka: KafkaSettings, topic: str, count: int) -> list[dict[str, Any]]:
    reader = Consumer(consumer_config(kafka, f"reader-{time.monotonic_ns()}"))
    reader.subscribe([topic])
    values: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while len(values) < count and time.monotonic() < deadline:
        for message in reader.consume(100, 0.3):
            if message.error() is None:
                values.append(json.loads(message.value()))
    reader.close()
    return values


@pytest.mark.usefixtures("cleanup")
def test_features_stage_alone_applies_dead_letters_and_commits(
    settings: HotPathSettings,
    publish: Callable[[Sequence[Event | bytes]], None],
    redis_client: redis.Redis,
) -> None:
    first = event("e1", 0)
    # Valid by the pattern, but its offset moves it past the year 9999 in UTC.
    past_9999 = (
        event("e5", 0)
        .model_dump_json(exclude_none=True)
        .encode()
        .replace(b"2019-10-01T00:00:00Z", b"9999-12-31T23:59:59-23:59")
    )
    publish(
        [
            first,
            event("e2", 10, item_id="b"),
            event("e3", 20, item_id="b", event_type="cart_add"),
            event("e4", 30, user_id="u2"),
            b"{not json",
            past_9999,
            first,
        ]
    )
    duplicates_before = metrics.DUPLICATE_EVENTS._value.get()
    hot_path = build_consumer(settings, stages=[])

    committed = run_until_committed(hot_path, settings, 7)
    hot_path.close()
    examples = read_topic(settings.kafka, settings.topics.training_examples, 4)
    letters = read_topic(settings.kafka, settings.topics.dead_letters, 2)
    store = FeatureStore(redis_client, settings.redis.key_prefix)
    vectors = store.read("u1", ["a", "b"])

    assert committed == 7
    assert vectors.user["user_click_count_1h"] == 2.0
    assert vectors.user["user_cart_add_count_1h"] == 1.0
    assert vectors.items["a"]["item_click_count_1h"] == 2.0
    assert [letter["reason"] for letter in letters] == [
        "invalid_json",
        "invalid_time",
    ]
    assert sorted(example["event_id"] for example in examples) == [
        "e1",
        "e2",
        "e3",
        "e4",
    ]
    by_id = {example["event_id"]: example for example in examples}
    assert by_id["e2"]["user_features"]["user_click_count_1h"] == 1.0
    assert by_id["e3"]["item_features"]["item_click_count_1h"] == 1.0
    assert metrics.DUPLICATE_EVENTS._value.get() == duplicates_before + 1


@pytest.mark.usefixtures("cleanup")
def test_wrongly_keyed_event_applied_and_counted(
    settings: HotPathSettings,
    publish: Callable[[Sequence[Event | bytes]], None],
    redis_client: redis.Redis,
) -> None:
    # Raw bytes go out keyed "u1", whatever their user_id.
    stray = event("k1", 0, user_id="u9").model_dump_json(exclude_none=True).encode()
    publish([stray, event("k2", 10, user_id="u1")])
    mismatches_before = metrics.KEY_MISMATCHES._value.get()
    hot_path = build_consumer(settings, stages=[])

    committed = run_until_committed(hot_path, settings, 2)
    hot_path.close()
    store = FeatureStore(redis_client, settings.redis.key_prefix)

    assert committed == 2
    assert store.read("u9", ["a"]).user["user_click_count_1h"] == 1.0
    assert metrics.KEY_MISMATCHES._value.get() == mismatches_before + 1


@pytest.mark.usefixtures("cleanup")
def test_stage_receives_applied_events_in_order_without_duplicates(
    settings: HotPathSettings, publish: Callable[[Sequence[Event | bytes]], None]
) -> None:
    events = [event(f"e{i}", i, item_id=f"i{i % 3}") for i in range(6)]
    publish([*events, events[2]])
    stage = RecordingStage()
    hot_path = build_consumer(settings, stages=[stage])

    run_until_committed(hot_path, settings, 7)
    hot_path.close()
    applied = [item for batch in stage.batches for item in batch]

    assert [item.event.event_id for item in applied] == [e.event_id for e in events]
    assert [item.offset for item in applied] == list(range(6))
    assert applied[3].user_features["user_click_count_1h"] == 3.0
    assert stage.starts == 1
    assert stage.is_closed


class StateRecordingStage:
    """Records, per event, the user's click count stored in Redis at stage time."""

    name = "state-recording"

    def __init__(self, client: redis.Redis, key_prefix: str) -> None:
        self.store = FeatureStore(client, key_prefix)
        self.seen: list[tuple[str, float]] = []

    def process(self, batch: Sequence[AppliedEvent]) -> None:
        for item in batch:
            vectors = self.store.read(item.event.user_id, [item.event.item_id])
            self.seen.append((item.event.event_id, vectors.user["user_click_count_1h"]))

    def close(self) -> None:
        pass


@pytest.mark.usefixtures("cleanup")
def test_stage_never_sees_later_events_of_same_user(
    settings: HotPathSettings,
    publish: Callable[[Sequence[Event | bytes]], None],
    redis_client: redis.Redis,
) -> None:
    events = [
        event("a1", 0, user_id="ua"),
        event("b1", 1, user_id="ub"),
        event("a2", 2, user_id="ua"),
        event("a3", 3, user_id="ua"),
        event("b2", 4, user_id="ub"),
    ]
    publish(events)
    stage = StateRecordingStage(redis_client, settings.redis.key_prefix)
    hot_path = build_consumer(settings, stages=[stage])

    run_until_committed(hot_path, settings, len(events))
    hot_path.close()

    assert sorted(stage.seen) == [
        ("a1", 1.0),
        ("a2", 2.0),
        ("a3", 3.0),
        ("b1", 1.0),
        ("b2", 2.0),
    ]


@pytest.mark.usefixtures("cleanup")
def test_stage_told_resume_offsets_on_assignment(
    settings: HotPathSettings, publish: Callable[[Sequence[Event | bytes]], None]
) -> None:
    publish([event("r1", 0, user_id="u1"), event("r2", 1, user_id="u2")])
    first = build_consumer(settings, stages=[RecordingStage()])
    run_until_committed(first, settings, 2)
    first.close()
    stage = RecordingStage()
    second = build_consumer(settings, stages=[stage])

    second.subscribe()
    deadline = time.monotonic() + 30
    while not stage.assignments and time.monotonic() < deadline:
        second.poll_once()
    second.close()

    assert len(stage.assignments) == 1
    assert sum(stage.assignments[0].values()) == 2


@pytest.mark.usefixtures("cleanup")
def test_failing_stage_is_retried_before_commit(
    settings: HotPathSettings,
    publish: Callable[[Sequence[Event | bytes]], None],
    redis_client: redis.Redis,
) -> None:
    publish([event("e1", 0), event("e2", 5)])
    stage = RecordingStage(failing_calls=[1])
    retries_before = metrics.RETRIES.labels("stage")._value.get()
    hot_path = build_consumer(settings, stages=[stage])

    committed = run_until_committed(hot_path, settings, 2)
    hot_path.close()
    store = FeatureStore(redis_client, settings.redis.key_prefix)

    assert committed == 2
    assert stage.calls == 3
    assert [[item.event.event_id for item in batch] for batch in stage.batches] == [
        ["e1"],
        ["e2"],
    ]
    assert store.read("u1", ["a"]).items["a"]["item_click_count_1h"] == 2.0
    assert metrics.RETRIES.labels("stage")._value.get() == retries_before + 1


class StopRequestingStage(RecordingStage):
    """Records every batch and calls ``on_process`` after each, as a signal would."""

    def __init__(self) -> None:
        super().__init__()
        self.on_process: Callable[[], None] = lambda: None

    def process(self, batch: Sequence[AppliedEvent]) -> None:
        super().process(batch)
        self.on_process()


def committed_count(settings: HotPathSettings) -> int:
    probe = Consumer(consumer_config(settings.kafka, settings.group_id))
    partitions = [TopicPartition(settings.topics.events, p) for p in range(2)]
    try:
        offsets = probe.committed(partitions, timeout=10)
    finally:
        probe.close()
    return sum(max(tp.offset, 0) for tp in offsets)


@pytest.mark.usefixtures("cleanup")
def test_stop_during_batch_commits_it(
    settings: HotPathSettings,
    publish: Callable[[Sequence[Event | bytes]], None],
) -> None:
    publish([event("e1", 0), event("e2", 5, user_id="u2")])
    stage = StopRequestingStage()
    hot_path = build_consumer(settings, stages=[stage])
    stage.on_process = hot_path.stop

    hot_path.run()

    assert committed_count(settings) == len(stage.batches[0]) > 0


class PoisonStage:
    """Raises whenever a batch contains the event ``poison``; records the rest."""

    name = "poison"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def process(self, batch: Sequence[AppliedEvent]) -> None:
        ids = [item.event.event_id for item in batch]
        if "poison" in ids:
            raise ValueError("cannot score this event")
        self.seen.extend(ids)

    def close(self) -> None:
        pass


@pytest.mark.usefixtures("cleanup")
def test_always_failing_event_is_dead_lettered(
    settings: HotPathSettings,
    publish: Callable[[Sequence[Event | bytes]], None],
) -> None:
    settings = settings.model_copy(update={"stage_attempts": 2})
    publish(
        [
            event("before", 0, user_id="u1"),
            event("poison", 1, user_id="u2"),
            event("after", 2, user_id="u3"),
        ]
    )
    stage = PoisonStage()
    hot_path = build_consumer(settings, stages=[stage])

    committed = run_until_committed(hot_path, settings, 3)
    hot_path.close()
    letters = read_topic(settings.kafka, settings.topics.dead_letters, 1)

    assert committed == 3
    assert sorted(stage.seen) == ["after", "before"]
    assert [letter["reason"] for letter in letters] == ["processing_failed"]
    assert "ValueError: cannot score this event" in letters[0]["message"]
    assert letters[0]["source_offset"] >= 0


class UnacknowledgedSlatesStage:
    """Fails its first calls as a publisher does while the broker is down."""

    name = "unacknowledged"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.seen: list[str] = []

    def process(self, batch: Sequence[AppliedEvent]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise SlateDeliveryError("1 slate(s) still queued for the broker")
        self.seen.extend(item.event.event_id for item in batch)

    def close(self) -> None:
        pass


@pytest.mark.usefixtures("cleanup")
def test_unacknowledged_slates_are_retried(
    settings: HotPathSettings,
    publish: Callable[[Sequence[Event | bytes]], None],
) -> None:
    settings = settings.model_copy(update={"stage_attempts": 2})
    publish([event("e1", 0, user_id="u1"), event("e2", 1, user_id="u2")])
    stage = UnacknowledgedSlatesStage(failures=4)
    retries = metrics.RETRIES.labels("kafka")
    retries_before = retries._value.get()
    hot_path = build_consumer(settings, stages=[stage])

    committed = run_until_committed(hot_path, settings, 2)
    hot_path.close()

    assert committed == 2
    assert sorted(stage.seen) == ["e1", "e2"]
    assert retries._value.get() - retries_before == 4


@pytest.mark.usefixtures("cleanup")
def test_consumer_lag_gauge_reaches_zero_after_catching_up(
    settings: HotPathSettings, publish: Callable[[Sequence[Event | bytes]], None]
) -> None:
    publish([event(f"e{i}", i) for i in range(20)])
    hot_path = build_consumer(settings, stages=[])

    run_until_committed(hot_path, settings, 20)
    lags = {
        sample.labels["partition"]: sample.value
        for sample in metrics.CONSUMER_LAG.collect()[0].samples
    }
    hot_path.close()

    assert lags
    assert all(value == 0.0 for value in lags.values())
