"""StopRequest and the waits it ends: a stop gives up on a gone or frozen broker."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from services.common.errors import BrokerGoneError, CommitPendingError
from services.common.kafka import producer_config
from services.common.settings import KafkaSettings
from services.common.stop_request import (
    StopRequest,
    commit_while_reachable,
    flush_while_reachable,
)
from tests.librdkafka_logs import unreachable_kafka


@pytest.fixture
def listening_kafka() -> Iterator[KafkaSettings]:
    """Kafka settings for a loopback port that accepts and never responds."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield KafkaSettings(bootstrap=f"127.0.0.1:{server.getsockname()[1]}")


def queued_producer(kafka: KafkaSettings) -> Producer:
    """Return a producer holding one message that it cannot deliver."""
    producer = Producer(producer_config(kafka, is_polled_steadily=True))
    producer.produce("events", b"value", b"user-1")
    return producer


def test_stop_request_broker_is_not_gone_before_stop() -> None:
    stop = StopRequest(unreachable_kafka())

    assert not stop.is_broker_gone()


def test_stop_request_broker_is_gone_when_stopping_and_every_server_refuses() -> None:
    stop = StopRequest(unreachable_kafka())

    stop.set()

    assert stop.is_broker_gone()


def test_stop_request_broker_is_not_gone_while_a_server_accepts(
    listening_kafka: KafkaSettings,
) -> None:
    unreachable = unreachable_kafka().bootstrap
    kafka = KafkaSettings(bootstrap=f"{unreachable},{listening_kafka.bootstrap}")
    stop = StopRequest(kafka)

    stop.set()

    assert not stop.is_broker_gone()


def test_flush_while_reachable_returns_0_when_nothing_is_queued() -> None:
    kafka = unreachable_kafka()
    stop = StopRequest(kafka)
    stop.set()

    remaining = flush_while_reachable(
        Producer(producer_config(kafka, is_polled_steadily=True)), 10.0, stop
    )

    assert remaining == 0


def test_flush_while_reachable_raises_when_stopping_and_broker_refuses() -> None:
    kafka = unreachable_kafka()
    stop = StopRequest(kafka)
    producer = queued_producer(kafka)
    stop.set()

    with pytest.raises(BrokerGoneError, match=f"1 message.*{kafka.bootstrap}"):
        flush_while_reachable(producer, 30.0, stop)


def test_flush_while_reachable_waits_timeout_while_not_stopping() -> None:
    kafka = unreachable_kafka()
    producer = queued_producer(kafka)

    remaining = flush_while_reachable(producer, 0.2, StopRequest(kafka))

    assert remaining == 1


def test_flush_while_reachable_waits_timeout_while_broker_accepts(
    listening_kafka: KafkaSettings,
) -> None:
    stop = StopRequest(listening_kafka)
    producer = queued_producer(listening_kafka)
    stop.set()

    remaining = flush_while_reachable(producer, 0.2, stop)

    assert remaining == 1


class _Clock:
    """A monotonic clock that moves only when a test advances it."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_stop_request_is_overdue_after_wait_seconds() -> None:
    clock = _Clock()
    stop = StopRequest(unreachable_kafka(), wait_seconds=10.0, clock=clock)

    clock.now += 60.0
    is_overdue_before_stop = stop.is_overdue()
    stop.set()
    clock.now += 9.0
    is_overdue_early = stop.is_overdue()
    clock.now += 1.0

    assert not is_overdue_before_stop
    assert not is_overdue_early
    assert stop.is_overdue()


def test_flush_while_reachable_raises_when_stop_is_overdue(
    listening_kafka: KafkaSettings,
) -> None:
    clock = _Clock()
    stop = StopRequest(listening_kafka, wait_seconds=10.0, clock=clock)
    producer = queued_producer(listening_kafka)
    stop.set()
    clock.now += 10.0

    with pytest.raises(BrokerGoneError, match="did not confirm them in time"):
        flush_while_reachable(producer, 30.0, stop)


class HeldCommitConsumer:
    """A consumer whose commit waits until released, as on a frozen broker."""

    def __init__(self, error: KafkaException | None = None) -> None:
        self.release = threading.Event()
        self.error = error
        self.committed: list[TopicPartition] = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        assert not asynchronous
        self.release.wait(30)
        if self.error is not None:
            raise self.error
        self.committed = offsets


OFFSETS = [TopicPartition("catalog", 0, 12)]


def test_commit_returns_after_commit() -> None:
    consumer = HeldCommitConsumer()
    consumer.release.set()

    commit_while_reachable(consumer, OFFSETS, StopRequest(unreachable_kafka()))  # type: ignore[arg-type]

    assert consumer.committed == OFFSETS


def test_commit_raises_commit_error() -> None:
    consumer = HeldCommitConsumer(KafkaException(KafkaError(KafkaError._TIMED_OUT)))
    consumer.release.set()

    with pytest.raises(KafkaException):
        commit_while_reachable(consumer, OFFSETS, StopRequest(unreachable_kafka()))  # type: ignore[arg-type]


def test_commit_gives_up_on_gone_broker() -> None:
    consumer = HeldCommitConsumer()
    kafka = unreachable_kafka()
    stop = StopRequest(kafka)
    stop.set()

    with pytest.raises(
        CommitPendingError, match=f"no broker accepts.*{kafka.bootstrap}"
    ):
        commit_while_reachable(consumer, OFFSETS, stop)  # type: ignore[arg-type]
    consumer.release.set()


def test_commit_gives_up_when_overdue(
    listening_kafka: KafkaSettings,
) -> None:
    consumer = HeldCommitConsumer()
    clock = _Clock()
    stop = StopRequest(listening_kafka, wait_seconds=10.0, clock=clock)
    stop.set()
    clock.now += 10.0

    with pytest.raises(
        CommitPendingError, match="did not respond to the commit in time"
    ):
        commit_while_reachable(consumer, OFFSETS, stop)  # type: ignore[arg-type]
    consumer.release.set()


def test_commit_waits_while_not_stopping() -> None:
    consumer = HeldCommitConsumer()
    stop = StopRequest(unreachable_kafka())
    # Released only after the caller has passed several broker checks.
    threading.Timer(1.2, consumer.release.set).start()

    commit_while_reachable(consumer, OFFSETS, stop)  # type: ignore[arg-type]

    assert consumer.committed == OFFSETS
