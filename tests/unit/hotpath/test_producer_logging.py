"""The hot path's producers and polled stages, with no broker listening."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer

from services.common.kafka import consumer_config, producer_config
from services.common.settings import TopicSettings
from services.hotpath.batch import Batch
from services.hotpath.consumer import HotPathConsumer
from services.hotpath.settings import HotPathSettings
from services.scorer.publisher import SlatePublisher
from tests.librdkafka_logs import (
    RAW_LIBRDKAFKA_LINE,
    poll_until_producer_logs,
    unreachable_kafka,
)


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


@pytest.fixture
def stage() -> _PolledStage:
    return _PolledStage()


@pytest.fixture
def idle_hotpath(stage: _PolledStage) -> Iterator[HotPathConsumer]:
    """Return a hot path with one polled stage, whose broker address has no listener."""
    kafka = unreachable_kafka()
    settings = HotPathSettings(kafka=kafka, poll_timeout_seconds=0.05)
    consumer = Consumer(consumer_config(kafka, "hotpath-logging-test"))
    producer = Producer(producer_config(kafka, is_polled_steadily=True))
    yield HotPathConsumer(settings, consumer, producer, None, [stage])  # type: ignore[arg-type]
    consumer.close()


def test_idle_poll_logs_producer_lines(
    idle_hotpath: HotPathConsumer,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    records = poll_until_producer_logs(idle_hotpath.poll_once, caplog)

    assert records
    assert RAW_LIBRDKAFKA_LINE.search(capfd.readouterr().err) is None


def test_idle_poll_polls_stages(
    idle_hotpath: HotPathConsumer, stage: _PolledStage
) -> None:
    idle_hotpath.poll_once()
    idle_hotpath.poll_once()

    assert stage.polls == 2


def test_retry_backoff_polls_stages(
    idle_hotpath: HotPathConsumer, stage: _PolledStage
) -> None:
    is_retrying = idle_hotpath._wait_paused(0.3, Batch())

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


def test_flush_runs_after_stop_request(idle_hotpath: HotPathConsumer) -> None:
    # A stop requested while a batch ran must not keep that batch from being
    # flushed and committed, or the next owner publishes its slates again.
    idle_hotpath.stop()

    assert idle_hotpath._flush(Batch())
