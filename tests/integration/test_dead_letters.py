"""DeadLetterWriter against the session's real Tansu broker."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from schemas.deadletters import DeadLetter, RejectionReason
from schemas.validation import Rejection, parse_event
from services.common.deadletters import DeadLetterWriter
from services.common.kafka import consumer_config, producer_config
from services.common.settings import KafkaSettings

pytestmark = pytest.mark.integration


def test_dead_letter_readable_from_topic(
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    unique_name: Callable[[str], str],
) -> None:
    topic = make_topic("events.dlq", partitions=2)
    raw_value = b'{"event_id": "e-9", "event_type": "view"}'
    rejection = parse_event(raw_value)
    assert isinstance(rejection, Rejection)
    writer = DeadLetterWriter(Producer(producer_config(kafka_settings)), topic, "test")

    writer.send(
        rejection,
        raw_key=b"u-9",
        raw_value=raw_value,
        source_topic="events",
        source_partition=1,
        source_offset=77,
    )
    writer.flush(timeout_seconds=10)

    message = _read_one(kafka_settings, topic, unique_name("group"))
    letter = DeadLetter.model_validate_json(message.value())
    assert message.key() == b"u-9"
    assert letter.reason is RejectionReason.UNKNOWN_EVENT_TYPE
    assert base64.b64decode(letter.raw_value_base64 or "") == raw_value
    assert (letter.source_topic, letter.source_partition) == ("events", 1)
    assert letter.source_offset == 77


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
