"""The catalog consumer's librdkafka log lines, with no broker listening."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer

from services.common.kafka import consumer_config, producer_config
from services.features.consumer import CatalogConsumer
from services.features.settings import CatalogSettings
from tests.librdkafka_logs import (
    RAW_LIBRDKAFKA_LINE,
    poll_until_producer_logs,
    unreachable_kafka,
)


@pytest.fixture
def catalog_consumer() -> Iterator[CatalogConsumer]:
    kafka = unreachable_kafka()
    settings = CatalogSettings(kafka=kafka, poll_timeout_seconds=0.1)
    consumer = Consumer(consumer_config(kafka, "catalog-test"))
    producer = Producer(producer_config(kafka, is_polled_steadily=True))
    yield CatalogConsumer(settings, consumer, producer, writer=None)  # type: ignore[arg-type]
    consumer.close()


def test_catalog_poll_once_logs_producer_lines(
    catalog_consumer: CatalogConsumer,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    records = poll_until_producer_logs(catalog_consumer.poll_once, caplog)

    assert records
    assert RAW_LIBRDKAFKA_LINE.search(capfd.readouterr().err) is None
