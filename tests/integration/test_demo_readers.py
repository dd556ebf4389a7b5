"""The demo's topic readers against the real broker."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from services.common.kafka import producer_config
from services.common.settings import KafkaSettings
from services.demo.runner import _reader_from_start

pytestmark = pytest.mark.integration


def test_reader_sees_messages_published_before_it(
    kafka_settings: KafkaSettings, make_topic: Callable[..., str]
) -> None:
    topic = make_topic("slates", 3)
    producer = Producer(producer_config(kafka_settings))
    for partition in range(3):
        producer.produce(topic, value=f"m{partition}".encode(), partition=partition)
    producer.flush(10)
    reader = _reader_from_start(kafka_settings, topic, 3)

    values: set[bytes] = set()
    deadline = time.monotonic() + 20
    while len(values) < 3 and time.monotonic() < deadline:
        for message in reader.consume(10, timeout=0.5):
            if message.error() is None:
                values.add(message.value() or b"")
    reader.close()

    assert values == {b"m0", b"m1", b"m2"}


def test_reader_joins_no_group(
    kafka_settings: KafkaSettings, make_topic: Callable[..., str]
) -> None:
    # A group member closed before its first poll may wait for a pending
    # rebalance with no timeout. A reader outside any group has none.
    topic = make_topic("models", 1)
    reader = _reader_from_start(kafka_settings, topic, 1)

    assigned = [(tp.topic, tp.partition) for tp in reader.assignment()]
    reader.poll(0.5)
    member = reader.memberid()
    reader.close()

    assert assigned == [(topic, 0)]
    assert member is None
