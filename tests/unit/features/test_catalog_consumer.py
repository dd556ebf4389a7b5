"""The catalog consumer without a broker: librdkafka log lines and retries."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from schemas.deadletters import RejectionReason
from schemas.validation import Rejection
from services.common.errors import BrokerGoneError, DeadLetterDeliveryError
from services.common.kafka import consumer_config, producer_config
from services.features import consumer as consumer_module
from services.features.consumer import CatalogConsumer
from services.features.marker import CatalogMarker
from services.features.settings import CatalogSettings
from services.infra import find_free_port
from tests.librdkafka_logs import (
    RAW_LIBRDKAFKA_LINE,
    poll_until_producer_logs,
    unreachable_kafka,
)


def unreachable_marker() -> CatalogMarker:
    """Return a marker on a loopback port where no Redis listens."""
    client = redis.Redis(port=find_free_port())
    return CatalogMarker(client, "cw", "catalog", "catalog-test")


@pytest.fixture
def catalog_consumer() -> Iterator[CatalogConsumer]:
    kafka = unreachable_kafka()
    settings = CatalogSettings(kafka=kafka, poll_timeout_seconds=0.1)
    consumer = Consumer(consumer_config(kafka, "catalog-test"))
    producer = Producer(producer_config(kafka, is_polled_steadily=True))
    yield CatalogConsumer(
        settings,
        consumer,
        producer,
        writer=None,  # type: ignore[arg-type]
        marker=unreachable_marker(),
    )
    consumer.close()


def test_catalog_poll_once_logs_producer_lines(
    catalog_consumer: CatalogConsumer,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    records = poll_until_producer_logs(catalog_consumer.poll_once, caplog)

    assert records
    assert RAW_LIBRDKAFKA_LINE.search(capfd.readouterr().err) is None


class _Message:
    """The few accessors of a consumed message that the catalog consumer reads."""

    def __init__(self, offset: int, key: bytes, value: bytes) -> None:
        self._offset = offset
        self._key = key
        self._value = value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return "catalog"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value


class _FlakyDeadLetters:
    """A dead-letter writer whose first flush finds the broker gone."""

    def __init__(self) -> None:
        self.sent: list[Rejection] = []
        self.flushes = 0

    def send(self, rejection: Rejection, **_: object) -> None:
        self.sent.append(rejection)

    def flush(self) -> None:
        self.flushes += 1
        if self.flushes == 1:
            raise DeadLetterDeliveryError("1 message(s) still queued for the broker")


class _CommitLog:
    """A consumer that records the offsets it is asked to commit."""

    def __init__(self) -> None:
        self.commits: list[list[TopicPartition]] = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append(offsets)


def _catalog_with_dead_letters(
    monkeypatch: pytest.MonkeyPatch, dead_letters: object
) -> tuple[CatalogConsumer, _CommitLog]:
    """Return a catalog consumer that reads one invalid record, and its commits."""
    settings = CatalogSettings(kafka=unreachable_kafka(), poll_timeout_seconds=0.1)
    commits = _CommitLog()
    producer = Producer(producer_config(settings.kafka, is_polled_steadily=True))
    catalog = CatalogConsumer(
        settings,
        commits,  # type: ignore[arg-type]
        producer,
        writer=None,  # type: ignore[arg-type]
        marker=unreachable_marker(),
    )
    monkeypatch.setattr(catalog, "_dead_letters", dead_letters)
    monkeypatch.setattr(consumer_module, "_FIRST_BACKOFF_SECONDS", 0.0)
    monkeypatch.setattr(
        consumer_module,
        "consume_available",
        lambda *_: [_Message(41, b"not a catalog key", b"{}")],
    )
    return catalog, commits


def test_failed_dead_letter_retries_batch(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dead_letters = _FlakyDeadLetters()
    catalog, commits = _catalog_with_dead_letters(monkeypatch, dead_letters)

    with caplog.at_level(logging.WARNING, logger=consumer_module.__name__):
        stored = catalog.poll_once()

    assert stored == 1
    assert dead_letters.flushes == 2
    assert [r.reason for r in dead_letters.sent] == [RejectionReason.INVALID_ID] * 2
    assert commits.commits == [[TopicPartition("catalog", 0, 42)]]
    assert "kafka failed, retrying catalog batch" in caplog.text


class _GoneBrokerDeadLetters(_FlakyDeadLetters):
    """A dead-letter writer whose flush finds the broker gone during a stop."""

    def flush(self) -> None:
        self.flushes += 1
        raise BrokerGoneError("1 message(s) not confirmed: the service is stopping")


def test_stop_with_broker_gone_skips_commit(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dead_letters = _GoneBrokerDeadLetters()
    catalog, commits = _catalog_with_dead_letters(monkeypatch, dead_letters)

    with caplog.at_level(logging.WARNING, logger=consumer_module.__name__):
        catalog.poll_once()

    assert dead_letters.flushes == 1
    assert commits.commits == []
    assert "catalog batch not committed on stop" in caplog.text


class _StoppingDeadLetters(_FlakyDeadLetters):
    """A dead-letter writer whose flush fails just as the consumer is stopped."""

    def __init__(self) -> None:
        super().__init__()
        self.catalog: CatalogConsumer | None = None

    def flush(self) -> None:
        self.flushes += 1
        if self.catalog is not None:
            self.catalog.stop()
        raise DeadLetterDeliveryError("1 message(s) still queued for the broker")


def test_failure_during_stop_skips_commit(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dead_letters = _StoppingDeadLetters()
    catalog, commits = _catalog_with_dead_letters(monkeypatch, dead_letters)
    dead_letters.catalog = catalog

    with caplog.at_level(logging.WARNING, logger=consumer_module.__name__):
        catalog.poll_once()

    assert dead_letters.flushes == 1
    assert commits.commits == []
    assert "catalog batch not committed on stop" in caplog.text
    assert "retrying" not in caplog.text
