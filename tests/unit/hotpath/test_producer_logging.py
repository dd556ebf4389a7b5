"""The hot path's librdkafka producer lines, with no broker listening."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer

from services.common.kafka import consumer_config, producer_config
from services.hotpath.consumer import HotPathConsumer
from services.hotpath.settings import HotPathSettings
from tests.librdkafka_logs import (
    RAW_LIBRDKAFKA_LINE,
    poll_until_producer_logs,
    unreachable_kafka,
)


@pytest.fixture
def idle_hotpath() -> Iterator[HotPathConsumer]:
    kafka = unreachable_kafka()
    settings = HotPathSettings(kafka=kafka, poll_timeout_seconds=0.1)
    consumer = Consumer(consumer_config(kafka, "hotpath-logging-test"))
    producer = Producer(producer_config(kafka, is_polled_steadily=True))
    yield HotPathConsumer(settings, consumer, producer, store=None)  # type: ignore[arg-type]
    consumer.close()


def test_idle_poll_logs_producer_lines(
    idle_hotpath: HotPathConsumer,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    records = poll_until_producer_logs(idle_hotpath.poll_once, caplog)

    assert records
    assert RAW_LIBRDKAFKA_LINE.search(capfd.readouterr().err) is None
