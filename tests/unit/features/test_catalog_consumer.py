"""The catalog consumer's librdkafka log lines, with no broker listening."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer

from services.common.kafka import consumer_config, producer_config
from services.common.settings import KafkaSettings
from services.features.consumer import CatalogConsumer
from services.features.settings import CatalogSettings
from services.infra import find_free_port

# librdkafka's own stderr format: "%<syslog level>|<time>|<facility>|<client>| ..."
RAW_LIBRDKAFKA_LINE = re.compile(r"^%\d\|", re.MULTILINE)


@pytest.fixture
def catalog_consumer() -> Iterator[CatalogConsumer]:
    # Nothing listens on the port, so librdkafka logs failed connections.
    kafka = KafkaSettings(bootstrap=f"127.0.0.1:{find_free_port()}")
    settings = CatalogSettings(kafka=kafka, poll_timeout_seconds=0.1)
    consumer = Consumer(consumer_config(kafka, "catalog-test"))
    producer = Producer(producer_config(kafka, is_polled_steadily=True))
    yield CatalogConsumer(settings, consumer, producer, writer=None)  # type: ignore[arg-type]
    consumer.close()


def _producer_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "librdkafka" and "rdkafka#producer" in record.getMessage()
    ]


def test_catalog_poll_once_logs_producer_lines(
    catalog_consumer: CatalogConsumer,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG, logger="librdkafka")

    deadline = time.monotonic() + 10.0
    while not _producer_records(caplog) and time.monotonic() < deadline:
        catalog_consumer.poll_once()

    assert _producer_records(caplog)
    assert RAW_LIBRDKAFKA_LINE.search(capfd.readouterr().err) is None
