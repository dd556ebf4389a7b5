"""The hot path's producers and polled stages, with no broker listening."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer

from services.common.kafka import consumer_config, producer_config
from services.common.settings import TopicSettings
from services.hotpath.consumer import HotPathConsumer, _Batch
from services.hotpath.settings import HotPathSettings
from services.scorer.publisher import SlatePublisher
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


class _PolledStage:
    name = "polled"

    def __init__(self) -> None:
        self.polls = 0

    def process(self, batch: object) -> None:
        raise AssertionError("no batch expected")

    def close(self) -> None:
        pass

    def poll(self) -> None:
        self.polls += 1


def test_idle_poll_polls_stages() -> None:
    kafka = unreachable_kafka()
    settings = HotPathSettings(kafka=kafka, poll_timeout_seconds=0.05)
    consumer = Consumer(consumer_config(kafka, "hotpath-stage-poll-test"))
    producer = Producer(producer_config(kafka, is_polled_steadily=True))
    stage = _PolledStage()
    hotpath = HotPathConsumer(settings, consumer, producer, None, [stage])  # type: ignore[arg-type]
    try:
        hotpath.poll_once()
        hotpath.poll_once()
    finally:
        consumer.close()

    assert stage.polls == 2


def test_retry_backoff_polls_stages() -> None:
    kafka = unreachable_kafka()
    settings = HotPathSettings(kafka=kafka, poll_timeout_seconds=0.05)
    consumer = Consumer(consumer_config(kafka, "hotpath-backoff-poll-test"))
    producer = Producer(producer_config(kafka, is_polled_steadily=True))
    stage = _PolledStage()
    hotpath = HotPathConsumer(settings, consumer, producer, None, [stage])  # type: ignore[arg-type]
    try:
        is_retrying = hotpath._wait_paused(0.3, _Batch())
    finally:
        consumer.close()

    assert is_retrying
    assert stage.polls >= 1


def test_slate_publisher_poll_logs_producer_lines(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    kafka = unreachable_kafka()
    producer = Producer(producer_config(kafka, is_polled_steadily=True))
    publisher = SlatePublisher(producer, TopicSettings(), None, "cw", 60)

    records = poll_until_producer_logs(publisher.poll, caplog)

    assert records
    assert RAW_LIBRDKAFKA_LINE.search(capfd.readouterr().err) is None
