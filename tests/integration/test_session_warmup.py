"""Refilling the session-kNN index from the events topic, on the real broker."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer

from schemas.events import Event, EventType
from services.common.kafka import producer_config
from services.common.settings import KafkaSettings
from services.scorer.session_knn import SessionIndex, session_key
from services.scorer.warmup import warm_session_index

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _click(user_id: str, item_id: str, seconds: int) -> bytes:
    event = Event(
        event_id=f"{user_id}-{item_id}",
        event_type=EventType.CLICK,
        user_id=user_id,
        item_id=item_id,
        event_time=START + timedelta(seconds=seconds),
        session_id="visit",
    )
    return event.model_dump_json().encode()


@pytest.fixture
def events_topic(kafka_settings: KafkaSettings, make_topic: Callable[..., str]) -> str:
    """Return a two-partition topic: ann's clicks on 0, bob's on 1."""
    topic = make_topic("warmup", 2)
    producer = Producer(producer_config(kafka_settings))
    on_zero = [_click("ann", "x", 0), _click("ann", "y", 10), b"{not json"]
    on_zero.append(_click("ann", "z", 20))
    for value in on_zero:
        producer.produce(topic, value, b"ann", partition=0)
    for value in (_click("bob", "x", 5), _click("bob", "w", 15)):
        producer.produce(topic, value, b"bob", partition=1)
    assert producer.flush(15) == 0
    return topic


def _index() -> SessionIndex:
    return SessionIndex(max_sessions=100, max_items=10, samples_per_item=10)


def test_warmup_reads_events_before_resume_offsets(
    kafka_settings: KafkaSettings, events_topic: str
) -> None:
    index = _index()

    result = warm_session_index(
        index, kafka_settings, events_topic, {0: 3, 1: 2}, 100, 30.0
    )

    assert result.events == 4
    assert result.skipped == 1
    assert result.is_complete
    assert index.session_items(session_key("ann", "visit")) == ["x", "y"]
    assert index.session_items(session_key("bob", "visit")) == ["x", "w"]


def test_warmup_reads_at_most_events_per_partition(
    kafka_settings: KafkaSettings, events_topic: str
) -> None:
    index = _index()

    result = warm_session_index(index, kafka_settings, events_topic, {1: 2}, 1, 30.0)

    assert result.events == 1
    assert index.session_items(session_key("bob", "visit")) == ["w"]
    assert index.session_items(session_key("ann", "visit")) == []


def test_warmup_skips_partitions_at_start(
    kafka_settings: KafkaSettings, events_topic: str
) -> None:
    index = _index()

    result = warm_session_index(index, kafka_settings, events_topic, {0: 0}, 100, 30.0)

    assert result.events == 0
    assert result.is_complete
    assert len(index) == 0
