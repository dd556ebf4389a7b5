"""EventProducer and the topic checks against the session's real Tansu broker."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from confluent_kafka import Consumer

from schemas.deadletters import RejectionReason
from schemas.events import Event
from services.client import DeliveryReport, EventProducer
from services.common import kafka
from services.common.errors import (
    BrokerUnreachableError,
    InvalidEventError,
    TopicMissingError,
)
from services.common.kafka import (
    TopicSpec,
    consumer_config,
    create_topics,
    verify_topics,
)
from services.common.settings import KafkaSettings
from services.infra import find_free_port
from tests.event_fields import CLICK_FIELDS

pytestmark = pytest.mark.integration


def test_producer_reports_delivery_and_keys_by_user(
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    unique_name: Callable[[str], str],
) -> None:
    topic = make_topic("events", partitions=3)
    reports: list[DeliveryReport] = []

    with EventProducer(kafka_settings, topic=topic, on_delivery=reports.append) as p:
        future = p.send(CLICK_FIELDS)

    report = future.result(timeout=0)
    assert reports == [report]
    assert report.is_delivered
    assert report.offset == 0
    message = _read_one(kafka_settings, topic, unique_name("group"))
    assert message.key() == b"u-1"
    assert json.loads(message.value())["event_time"] == "2019-10-01T00:00:00Z"


def test_producer_raises_with_rejection_for_invalid_event(
    kafka_settings: KafkaSettings, make_topic: Callable[..., str]
) -> None:
    topic = make_topic("events")

    with EventProducer(kafka_settings, topic=topic) as producer:
        with pytest.raises(InvalidEventError, match="event_type") as caught:
            producer.send({**CLICK_FIELDS, "event_type": "view"})

    assert caught.value.rejection.reason is RejectionReason.UNKNOWN_EVENT_TYPE


def test_producer_sends_event_model(
    kafka_settings: KafkaSettings, make_topic: Callable[..., str]
) -> None:
    topic = make_topic("events")
    event = Event.model_validate(
        {**CLICK_FIELDS, "event_type": "purchase", "quantity": 2}
    )

    with EventProducer(kafka_settings, topic=topic) as producer:
        future = producer.send(event)

    assert future.result(timeout=0).event_id == "e-1"


def test_producer_rejects_naive_datetime(
    kafka_settings: KafkaSettings, make_topic: Callable[..., str]
) -> None:
    topic = make_topic("events")

    with EventProducer(kafka_settings, topic=topic) as producer:
        with pytest.raises(InvalidEventError, match="tz-aware datetime") as caught:
            producer.send({**CLICK_FIELDS, "event_time": datetime(2019, 10, 1)})

    assert caught.value.rejection.reason is RejectionReason.INVALID_TIME


def test_producer_fails_fast_when_broker_is_unreachable() -> None:
    address = f"127.0.0.1:{find_free_port()}"
    started = time.monotonic()

    with pytest.raises(BrokerUnreachableError, match=address):
        EventProducer(KafkaSettings(bootstrap=address), connect_timeout_seconds=2)

    assert time.monotonic() - started < 5


def test_producer_refuses_missing_topic(kafka_settings: KafkaSettings) -> None:
    with pytest.raises(TopicMissingError, match="cartwheel topics create"):
        EventProducer(kafka_settings, topic="no-such-topic-for-producer")


def _read_one(kafka: KafkaSettings, topic: str, group: str) -> Any:
    consumer = Consumer(consumer_config(kafka, group, fetch_wait_ms=10))
    consumer.subscribe([topic])
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                return message
    finally:
        consumer.close()
    raise AssertionError(f"no message on {topic} within 30 s")


def test_verify_topics_explains_partition_mismatch(
    kafka_settings: KafkaSettings,
) -> None:
    name = f"sized-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_settings, [TopicSpec(name, 2)])

    with pytest.raises(TopicMissingError) as caught:
        verify_topics(kafka_settings, [TopicSpec(name, 3)])

    message = str(caught.value)
    assert "has 2 partitions, expected 3" in message
    assert "set CARTWHEEL_TOPIC_PARTITIONS to the count they have (2)" in message
    assert message.index("CARTWHEEL_TOPIC_PARTITIONS") < message.index("delete")
    assert "loses all of its messages" in message


def test_verify_topics_no_count_fits(
    kafka_settings: KafkaSettings,
) -> None:
    two, three = (f"sized-{uuid.uuid4().hex[:8]}" for _ in range(2))
    models = f"models-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_settings, [TopicSpec(two, 2), TopicSpec(models, 2)])
    create_topics(kafka_settings, [TopicSpec(three, 3)])
    expected = [
        TopicSpec(two, 3),
        TopicSpec(three, 3),
        TopicSpec(models, 1, has_fixed_count=True),
    ]

    with pytest.raises(TopicMissingError) as caught:
        verify_topics(kafka_settings, expected)

    message = str(caught.value)
    assert "No CARTWHEEL_TOPIC_PARTITIONS fits them all" in message
    assert "the count they have" not in message
    assert "run 'cartwheel infra down', 'infra up' and 'topics create'" in message


def test_create_topics_stops_at_missized_topic(
    kafka_settings: KafkaSettings,
) -> None:
    sized, missing = (f"sized-{uuid.uuid4().hex[:8]}" for _ in range(2))
    create_topics(kafka_settings, [TopicSpec(sized, 2)])

    with pytest.raises(TopicMissingError) as caught:
        create_topics(kafka_settings, [TopicSpec(sized, 3), TopicSpec(missing, 3)])

    assert "set CARTWHEEL_TOPIC_PARTITIONS to the count they have (2)" in str(
        caught.value
    )
    with pytest.raises(TopicMissingError, match=f"topic '{missing}' is missing"):
        verify_topics(kafka_settings, [TopicSpec(missing, 3)])


def test_verify_topics_ssl_hints_at_tls(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The session broker listens for plaintext, so the TLS handshake fails.
    monkeypatch.setattr(kafka, "_ADMIN_TIMEOUT_SECONDS", 2.0)
    settings = KafkaSettings(bootstrap=kafka_bootstrap, security_protocol="SSL")

    with pytest.raises(BrokerUnreachableError) as caught:
        verify_topics(settings, [TopicSpec("events", 6)])

    message = str(caught.value)
    assert message.startswith(f"no Kafka broker responded at {kafka_bootstrap}")
    assert "is the broker listening for TLS on that port?" in message
    assert "CARTWHEEL_KAFKA_SECURITY_PROTOCOL is SSL" in message
    assert "set it to PLAINTEXT" in message
