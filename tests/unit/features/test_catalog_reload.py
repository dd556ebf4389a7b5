"""The catalog consumer reads partitions again when Redis has lost them.

A consumer, a marker and a clock in memory stand in for the broker and Redis;
tests/integration/test_features_catalog.py runs the same against real ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

import pytest
import redis
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    KafkaError,
    TopicPartition,
)

from services.features import metrics
from services.features.consumer import CatalogConsumer
from services.features.marker import PartitionState
from services.features.settings import CatalogSettings
from tests.librdkafka_logs import unreachable_kafka

TOPIC = "catalog"
CHECK_SECONDS = 30.0
WARNING_PHRASE = "redis has no catalog, reading the topic again from the start"


class _Message:
    """A consumed catalog message, or a partition end when ``key`` is None."""

    def __init__(self, partition: int, offset: int, key: bytes | None) -> None:
        self._partition = partition
        self._offset = offset
        self._key = key

    def error(self) -> KafkaError | None:
        return None if self._key else KafkaError(KafkaError._PARTITION_EOF)

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes:
        return b"{}"


def record(partition: int, offset: int) -> _Message:
    return _Message(partition, offset, f"item:{partition}-{offset}".encode())


def partition_end(partition: int, offset: int = 0) -> _Message:
    return _Message(partition, offset, None)


class _Consumer:
    """A group member that returns queued batches and records the calls it gets."""

    def __init__(self) -> None:
        self.batches: list[list[_Message]] = []
        self.assigned: list[TopicPartition] = []
        self.sought: list[TopicPartition] = []
        self.commits: list[list[TopicPartition]] = []
        self.callbacks: dict[str, Callable[..., None]] = {}

    def subscribe(self, topics: list[str], **callbacks: Callable[..., None]) -> None:
        self.callbacks = callbacks

    def consume(self, count: int, timeout: float) -> list[_Message]:
        return self.batches.pop(0) if self.batches and timeout else []

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = partitions

    def seek(self, partition: TopicPartition) -> None:
        self.sought.append(partition)

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append(offsets)

    def rebalance(self, callback: str, *partitions: int) -> None:
        """Call the consumer's ``on_assign``, ``on_revoke`` or ``on_lost``."""
        topic_partitions = [TopicPartition(TOPIC, p) for p in partitions]
        self.callbacks[callback](self, topic_partitions)


class _Producer:
    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


class _Writer:
    def __init__(self) -> None:
        self.keys: list[bytes | None] = []

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        self.keys.append(key)


class _Marker:
    """The marker's entries in a dict; ``is_down`` makes it fail like Redis."""

    def __init__(self) -> None:
        self.entries: dict[int, PartitionState] = {}
        self.is_down = False

    def states(self, partitions: Collection[int]) -> dict[int, PartitionState]:
        self._fail_when_down()
        return {p: self.entries[p] for p in partitions if p in self.entries}

    def start(self, partitions: Collection[int]) -> None:
        self._fail_when_down()
        self.entries.update(dict.fromkeys(partitions, PartitionState.LOADING))

    def finish(self, partitions: Collection[int]) -> set[int]:
        self._fail_when_down()
        vanished = {p for p in partitions if p not in self.entries}
        loaded = set(partitions) - vanished
        self.entries.update(dict.fromkeys(loaded, PartitionState.LOADED))
        return vanished

    def _fail_when_down(self) -> None:
        if self.is_down:
            raise redis.exceptions.ConnectionError("connection refused")


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Harness:
    """A catalog consumer wired to fakes, subscribed to the topic."""

    def __init__(self) -> None:
        self.consumer = _Consumer()
        self.writer = _Writer()
        self.marker = _Marker()
        self.clock = _Clock()
        settings = CatalogSettings(
            kafka=unreachable_kafka(),
            poll_timeout_seconds=0.1,
            catalog_reload_check_seconds=CHECK_SECONDS,
        )
        self.catalog = CatalogConsumer(
            settings,
            self.consumer,  # type: ignore[arg-type]
            _Producer(),  # type: ignore[arg-type]
            self.writer,  # type: ignore[arg-type]
            self.marker,  # type: ignore[arg-type]
            clock=self.clock,
        )
        self.catalog.subscribe()

    def poll(self, *batch: _Message) -> int:
        self.consumer.batches.append(list(batch))
        return self.catalog.poll_once()

    def assign_loaded(self, *partitions: int) -> None:
        self.marker.entries.update(dict.fromkeys(partitions, PartitionState.LOADED))
        self.consumer.rebalance("on_assign", *partitions)


@pytest.fixture
def harness() -> _Harness:
    return _Harness()


def reloads() -> float:
    return metrics.CATALOG_RELOADS._value.get()


def test_partitions_assigned_without_marker_are_read_from_start(
    harness: _Harness, caplog: pytest.LogCaptureFixture
) -> None:
    before = reloads()

    with caplog.at_level(logging.WARNING):
        harness.consumer.rebalance("on_assign", 0, 1)

    assert [tp.offset for tp in harness.consumer.assigned] == [OFFSET_BEGINNING] * 2
    assert harness.marker.entries == {
        0: PartitionState.LOADING,
        1: PartitionState.LOADING,
    }
    assert [r.getMessage() for r in caplog.records] == [
        f"{WARNING_PHRASE} topic={TOPIC} partitions=[0, 1] group=cartwheel-catalog"
    ]
    assert reloads() == before + 1


def test_partitions_assigned_with_marker_resume_at_committed_offsets(
    harness: _Harness,
) -> None:
    before = reloads()

    harness.assign_loaded(0, 1)

    assert [tp.offset for tp in harness.consumer.assigned] == [OFFSET_INVALID] * 2
    assert reloads() == before


def test_assign_reads_only_unloaded_partitions_from_start(
    harness: _Harness,
) -> None:
    harness.marker.entries = {0: PartitionState.LOADED, 1: PartitionState.LOADING}

    harness.consumer.rebalance("on_assign", 0, 1, 2)

    offsets = {tp.partition: tp.offset for tp in harness.consumer.assigned}
    assert offsets == {0: OFFSET_INVALID, 1: OFFSET_BEGINNING, 2: OFFSET_BEGINNING}


def test_partition_end_after_commit_marks_partition_loaded(
    harness: _Harness,
) -> None:
    harness.consumer.rebalance("on_assign", 0, 1)

    harness.poll(record(0, 0), record(0, 1), partition_end(0, 2))

    assert harness.consumer.commits == [[TopicPartition(TOPIC, 0, 2)]]
    assert harness.marker.entries == {
        0: PartitionState.LOADED,
        1: PartitionState.LOADING,
    }


def test_empty_topic_is_marked_loaded_once(harness: _Harness) -> None:
    harness.consumer.rebalance("on_assign", 0, 1)
    before = reloads()

    harness.poll(partition_end(0), partition_end(1))
    harness.clock.now += CHECK_SECONDS
    harness.poll()

    assert set(harness.marker.entries.values()) == {PartitionState.LOADED}
    assert harness.consumer.sought == []
    assert reloads() == before


def test_lost_marker_seeks_partitions_to_start_at_check(
    harness: _Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.assign_loaded(0, 1)
    harness.marker.entries.clear()
    harness.poll()
    assert harness.consumer.sought == []

    harness.clock.now += CHECK_SECONDS
    with caplog.at_level(logging.WARNING):
        harness.poll()

    assert harness.consumer.sought == [
        TopicPartition(TOPIC, 0, OFFSET_BEGINNING),
        TopicPartition(TOPIC, 1, OFFSET_BEGINNING),
    ]
    assert harness.marker.entries == {
        0: PartitionState.LOADING,
        1: PartitionState.LOADING,
    }
    assert [r.getMessage() for r in caplog.records] == [
        f"{WARNING_PHRASE} topic={TOPIC} partitions=[0, 1] group=cartwheel-catalog"
    ]


def test_check_skips_partition_being_reloaded(
    harness: _Harness,
) -> None:
    harness.consumer.rebalance("on_assign", 0)

    harness.clock.now += CHECK_SECONDS
    harness.poll(record(0, 0))

    assert harness.consumer.sought == []


def test_marker_lost_during_reload_restarts_partition(
    harness: _Harness,
) -> None:
    harness.consumer.rebalance("on_assign", 0)
    harness.poll(record(0, 0))
    harness.marker.entries.clear()

    harness.poll(partition_end(0, 1))

    assert harness.consumer.sought == [TopicPartition(TOPIC, 0, OFFSET_BEGINNING)]
    assert harness.marker.entries == {0: PartitionState.LOADING}


def test_redis_down_at_assign_keeps_offsets_until_check(
    harness: _Harness,
) -> None:
    harness.marker.is_down = True
    harness.consumer.rebalance("on_assign", 0)
    assert [tp.offset for tp in harness.consumer.assigned] == [OFFSET_INVALID]

    harness.marker.is_down = False
    harness.poll()

    assert harness.consumer.sought == [TopicPartition(TOPIC, 0, OFFSET_BEGINNING)]


def test_partition_end_is_marked_after_redis_returns(
    harness: _Harness,
) -> None:
    harness.consumer.rebalance("on_assign", 0)
    harness.marker.is_down = True
    harness.poll(record(0, 0), partition_end(0, 1))

    harness.marker.is_down = False
    harness.poll()

    assert harness.marker.entries == {0: PartitionState.LOADED}


def test_revoked_partition_is_neither_marked_nor_checked(harness: _Harness) -> None:
    harness.consumer.rebalance("on_assign", 0, 1)
    harness.consumer.rebalance("on_revoke", 0, 1)
    harness.marker.entries.clear()

    harness.poll(partition_end(0))
    harness.clock.now += CHECK_SECONDS
    harness.poll()

    assert harness.marker.entries == {}
    assert harness.consumer.sought == []


def test_uncommitted_partition_end_is_not_marked(
    harness: _Harness,
) -> None:
    harness.consumer.rebalance("on_assign", 0)
    harness.catalog.stop()

    harness.poll(record(0, 0), partition_end(0, 1))

    assert harness.consumer.commits == []
    assert harness.marker.entries == {0: PartitionState.LOADING}
