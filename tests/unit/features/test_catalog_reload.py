"""The catalog consumer reads partitions again when Redis has lost them.

A consumer, a marker and a clock in memory stand in for the broker and Redis;
tests/integration/test_features_catalog.py runs the same against real ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any

import pytest
import redis
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from services.common.deadletters import DEAD_LETTERS
from services.features import metrics
from services.features.consumer import CatalogConsumer
from services.features.marker import PartitionEntry, PartitionState
from services.features.settings import CatalogSettings
from tests.librdkafka_logs import unreachable_kafka

TOPIC = "catalog"
CHECK_SECONDS = 30.0
WARNING_PHRASE = "redis has no catalog, reading the topic again from the start"
FIRST_READ_PHRASE = "reading the catalog for the first time"
UNFINISHED_PHRASE = (
    "catalog read did not finish, reading the topic again from the start"
)


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


def invalid_record(partition: int, offset: int) -> _Message:
    """Return a message whose key names no catalog kind."""
    return _Message(partition, offset, f"order:{partition}-{offset}".encode())


def partition_end(partition: int, offset: int = 0) -> _Message:
    return _Message(partition, offset, None)


class _Consumer:
    """A group member that returns queued batches and records the calls it gets.

    ``committed_offsets`` contains the group's committed offsets, and
    ``is_coordinator_down`` makes reading them fail like librdkafka does.
    """

    def __init__(self) -> None:
        self.batches: list[list[_Message]] = []
        self.assigned: list[TopicPartition] = []
        self.sought: list[TopicPartition] = []
        self.commits: list[list[TopicPartition]] = []
        self.committed_offsets: dict[int, int] = {}
        self.is_coordinator_down = False
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
        self.committed_offsets.update({tp.partition: tp.offset for tp in offsets})

    def committed(
        self, partitions: list[TopicPartition], timeout: float
    ) -> list[TopicPartition]:
        if self.is_coordinator_down:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT))
        return [
            TopicPartition(
                TOPIC,
                tp.partition,
                self.committed_offsets.get(tp.partition, OFFSET_INVALID),
            )
            for tp in partitions
        ]

    def rebalance(self, callback: str, *partitions: int) -> None:
        """Call the consumer's ``on_assign``, ``on_revoke`` or ``on_lost``."""
        topic_partitions = [TopicPartition(TOPIC, p) for p in partitions]
        self.callbacks[callback](self, topic_partitions)


class _Producer:
    """Keeps the dead letters produced, each delivered at once."""

    def __init__(self) -> None:
        self.letters: list[bytes] = []

    def produce(self, topic: str, *, key: bytes | None, value: bytes, **_: Any) -> None:
        self.letters.append(value)

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
    """The marker's entries in dicts; ``is_down`` makes it fail like Redis.

    ``states`` contains each partition's state, and ``started_at`` the committed
    offset that its ``loading`` entry records.
    """

    def __init__(self) -> None:
        self.states: dict[int, PartitionState] = {}
        self.started_at: dict[int, int | None] = {}
        self.is_down = False

    def entries(self, partitions: Collection[int]) -> dict[int, PartitionEntry]:
        self._fail_when_down()
        return {
            p: PartitionEntry(self.states[p], self.started_at.get(p))
            for p in partitions
            if p in self.states
        }

    def start(self, committed_offsets: Mapping[int, int | None]) -> None:
        self._fail_when_down()
        self.states.update(dict.fromkeys(committed_offsets, PartitionState.LOADING))
        self.started_at.update(committed_offsets)

    def finish(self, partitions: Collection[int]) -> set[int]:
        self._fail_when_down()
        vanished = {p for p in partitions if p not in self.states}
        loaded = set(partitions) - vanished
        self.states.update(dict.fromkeys(loaded, PartitionState.LOADED))
        for partition in loaded:
            self.started_at.pop(partition, None)
        return vanished

    def clear(self) -> None:
        """Lose every entry, as a FLUSHALL does."""
        self.states.clear()
        self.started_at.clear()

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
        self.producer = _Producer()
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
            self.producer,  # type: ignore[arg-type]
            self.writer,  # type: ignore[arg-type]
            self.marker,  # type: ignore[arg-type]
            clock=self.clock,
        )
        self.catalog.subscribe()

    def poll(self, *batch: _Message) -> int:
        self.consumer.batches.append(list(batch))
        return self.catalog.poll_once()

    def assign_loaded(self, *partitions: int) -> None:
        self.marker.states.update(dict.fromkeys(partitions, PartitionState.LOADED))
        self.consumer.rebalance("on_assign", *partitions)


@pytest.fixture
def harness() -> _Harness:
    return _Harness()


def reloads() -> float:
    return metrics.CATALOG_RELOADS._value.get()


def catalog_dead_letters() -> float:
    return DEAD_LETTERS.labels(service="catalog", reason="invalid_id")._value.get()


def rejected_again() -> float:
    return metrics.CATALOG_RECORDS.labels("unknown", "rejected_again")._value.get()


def test_partitions_assigned_without_marker_are_read_from_start(
    harness: _Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.consumer.committed_offsets = {0: 4, 1: 9}
    before = reloads()

    with caplog.at_level(logging.INFO):
        harness.consumer.rebalance("on_assign", 0, 1)

    assert [tp.offset for tp in harness.consumer.assigned] == [OFFSET_BEGINNING] * 2
    assert harness.marker.states == {
        0: PartitionState.LOADING,
        1: PartitionState.LOADING,
    }
    assert harness.marker.started_at == {0: 4, 1: 9}
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"{WARNING_PHRASE} topic={TOPIC} partitions=[0, 1] group=cartwheel-catalog"
    ]
    assert reloads() == before + 1


def test_first_read_counts_no_reload(
    harness: _Harness, caplog: pytest.LogCaptureFixture
) -> None:
    before = reloads()

    with caplog.at_level(logging.INFO):
        harness.consumer.rebalance("on_assign", 0, 1)

    assert [tp.offset for tp in harness.consumer.assigned] == [OFFSET_BEGINNING] * 2
    assert harness.marker.states == dict.fromkeys([0, 1], PartitionState.LOADING)
    assert [(r.levelname, r.getMessage()) for r in caplog.records][1:] == [
        (
            "INFO",
            f"{FIRST_READ_PHRASE} topic={TOPIC} partitions=[0, 1] "
            "group=cartwheel-catalog",
        )
    ]
    assert reloads() == before


def test_reload_counts_only_committed_partitions(
    harness: _Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.consumer.committed_offsets = {1: 3}
    before = reloads()

    with caplog.at_level(logging.INFO):
        harness.consumer.rebalance("on_assign", 0, 1)

    assert [r.getMessage() for r in caplog.records][1:] == [
        f"{FIRST_READ_PHRASE} topic={TOPIC} partitions=[0] group=cartwheel-catalog",
        f"{WARNING_PHRASE} topic={TOPIC} partitions=[1] group=cartwheel-catalog",
    ]
    assert reloads() == before + 1


def test_unfinished_read_counts_no_reload(
    harness: _Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.marker.states = {0: PartitionState.LOADING}
    harness.marker.started_at = {0: 6}
    harness.consumer.committed_offsets = {0: 2}
    before = reloads()

    with caplog.at_level(logging.INFO):
        harness.consumer.rebalance("on_assign", 0)

    assert [tp.offset for tp in harness.consumer.assigned] == [OFFSET_BEGINNING]
    assert harness.marker.started_at == {0: 6}
    assert [r.getMessage() for r in caplog.records][1:] == [
        f"{UNFINISHED_PHRASE} topic={TOPIC} partitions=[0] group=cartwheel-catalog"
    ]
    assert reloads() == before


def test_reread_skips_dead_letter_below_committed_offset(
    harness: _Harness,
) -> None:
    harness.consumer.committed_offsets = {0: 3}
    harness.consumer.rebalance("on_assign", 0)
    letters_before = catalog_dead_letters()
    again_before = rejected_again()

    harness.poll(record(0, 0), invalid_record(0, 1), record(0, 2))

    assert harness.producer.letters == []
    assert catalog_dead_letters() == letters_before
    assert rejected_again() == again_before + 1
    assert harness.consumer.commits == [[TopicPartition(TOPIC, 0, 3)]]


def test_reread_dead_letters_from_committed_offset(
    harness: _Harness,
) -> None:
    harness.consumer.committed_offsets = {0: 3}
    harness.consumer.rebalance("on_assign", 0)
    letters_before = catalog_dead_letters()

    harness.poll(record(0, 2), invalid_record(0, 3), invalid_record(0, 4))

    assert len(harness.producer.letters) == 2
    assert catalog_dead_letters() == letters_before + 2


def test_first_read_dead_letters_every_invalid_record(harness: _Harness) -> None:
    harness.consumer.rebalance("on_assign", 0)
    again_before = rejected_again()

    harness.poll(invalid_record(0, 0), invalid_record(0, 1))

    assert len(harness.producer.letters) == 2
    assert rejected_again() == again_before


def test_takeover_keeps_unfinished_read_offset(harness: _Harness) -> None:
    harness.marker.states = {0: PartitionState.LOADING}
    harness.marker.started_at = {0: 5}
    harness.consumer.committed_offsets = {0: 2}
    harness.consumer.rebalance("on_assign", 0)

    harness.poll(invalid_record(0, 3), invalid_record(0, 5))

    assert len(harness.producer.letters) == 1
    assert b'"source_offset":5' in harness.producer.letters[0]


def test_lost_marker_during_reread_keeps_offset(
    harness: _Harness,
) -> None:
    harness.consumer.committed_offsets = {0: 5}
    harness.consumer.rebalance("on_assign", 0)
    harness.poll(record(0, 0), record(0, 1))
    harness.marker.clear()
    harness.clock.now += CHECK_SECONDS
    harness.poll()

    harness.poll(record(0, 0), record(0, 1), invalid_record(0, 2))

    assert harness.consumer.sought == [TopicPartition(TOPIC, 0, OFFSET_BEGINNING)]
    assert harness.marker.started_at == {0: 5}
    assert harness.producer.letters == []


def test_failed_committed_read_waits_for_check(
    harness: _Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.consumer.is_coordinator_down = True
    with caplog.at_level(logging.WARNING):
        harness.consumer.rebalance("on_assign", 0)
    assert [tp.offset for tp in harness.consumer.assigned] == [OFFSET_INVALID]
    assert harness.marker.states == {}
    assert "catalog committed offsets not read" in caplog.text

    harness.consumer.is_coordinator_down = False
    harness.poll()

    assert harness.consumer.sought == [TopicPartition(TOPIC, 0, OFFSET_BEGINNING)]
    assert harness.marker.states == {0: PartitionState.LOADING}


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
    harness.marker.states = {0: PartitionState.LOADED, 1: PartitionState.LOADING}

    harness.consumer.rebalance("on_assign", 0, 1, 2)

    offsets = {tp.partition: tp.offset for tp in harness.consumer.assigned}
    assert offsets == {0: OFFSET_INVALID, 1: OFFSET_BEGINNING, 2: OFFSET_BEGINNING}


def test_partition_end_after_commit_marks_partition_loaded(
    harness: _Harness,
) -> None:
    harness.consumer.rebalance("on_assign", 0, 1)

    harness.poll(record(0, 0), record(0, 1), partition_end(0, 2))

    assert harness.consumer.commits == [[TopicPartition(TOPIC, 0, 2)]]
    assert harness.marker.states == {
        0: PartitionState.LOADED,
        1: PartitionState.LOADING,
    }


def test_empty_topic_is_marked_loaded_once(harness: _Harness) -> None:
    harness.consumer.rebalance("on_assign", 0, 1)
    before = reloads()

    harness.poll(partition_end(0), partition_end(1))
    harness.clock.now += CHECK_SECONDS
    harness.poll()

    assert set(harness.marker.states.values()) == {PartitionState.LOADED}
    assert harness.consumer.sought == []
    assert reloads() == before


def test_lost_marker_seeks_partitions_to_start_at_check(
    harness: _Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.consumer.committed_offsets = {0: 7, 1: 8}
    harness.assign_loaded(0, 1)
    harness.marker.clear()
    harness.poll()
    assert harness.consumer.sought == []

    harness.clock.now += CHECK_SECONDS
    with caplog.at_level(logging.WARNING):
        harness.poll()

    assert harness.consumer.sought == [
        TopicPartition(TOPIC, 0, OFFSET_BEGINNING),
        TopicPartition(TOPIC, 1, OFFSET_BEGINNING),
    ]
    assert harness.marker.states == {
        0: PartitionState.LOADING,
        1: PartitionState.LOADING,
    }
    # Another test may have left INFO on, which lets the assignment line in.
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
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
    harness.marker.clear()

    harness.poll(partition_end(0, 1))

    assert harness.consumer.sought == [TopicPartition(TOPIC, 0, OFFSET_BEGINNING)]
    assert harness.marker.states == {0: PartitionState.LOADING}


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

    assert harness.marker.states == {0: PartitionState.LOADED}


def test_revoked_partition_is_neither_marked_nor_checked(harness: _Harness) -> None:
    harness.consumer.rebalance("on_assign", 0, 1)
    harness.consumer.rebalance("on_revoke", 0, 1)
    harness.marker.clear()

    harness.poll(partition_end(0))
    harness.clock.now += CHECK_SECONDS
    harness.poll()

    assert harness.marker.states == {}
    assert harness.consumer.sought == []


def test_uncommitted_partition_end_is_not_marked(
    harness: _Harness,
) -> None:
    harness.consumer.rebalance("on_assign", 0)
    harness.catalog.stop()

    harness.poll(record(0, 0), partition_end(0, 1))

    assert harness.consumer.commits == []
    assert harness.marker.states == {0: PartitionState.LOADING}
