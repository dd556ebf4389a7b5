"""Kafka helpers: batches that wait only for the first message, partition log lines."""

from __future__ import annotations

import logging
from collections import deque

import pytest
from confluent_kafka import TopicPartition

from services.common.kafka import consume_available, log_partition_change


class _Consumer:
    """Hands out prepared batches and records each ``consume`` call."""

    def __init__(self, *replies: list[str]) -> None:
        self.replies = deque(replies)
        self.calls: list[tuple[int, float]] = []

    def consume(self, num_messages: int, timeout: float) -> list[str]:
        self.calls.append((num_messages, timeout))
        reply = self.replies.popleft() if self.replies else []
        return reply[:num_messages]


def test_waits_only_for_the_first_message() -> None:
    consumer = _Consumer(["a"], ["b", "c"], [])

    messages = consume_available(consumer, 10, 0.5)  # type: ignore[arg-type]

    assert messages == ["a", "b", "c"]
    assert consumer.calls == [(1, 0.5), (9, 0), (7, 0)]


def test_returns_nothing_when_no_message_arrives() -> None:
    consumer = _Consumer([])

    assert consume_available(consumer, 10, 0.5) == []  # type: ignore[arg-type]
    assert consumer.calls == [(1, 0.5)]


def test_stops_at_the_batch_size() -> None:
    consumer = _Consumer(["a"], ["b", "c", "d"], ["e"])

    messages = consume_available(consumer, 3, 0.5)  # type: ignore[arg-type]

    assert messages == ["a", "b", "c"]
    assert consumer.calls == [(1, 0.5), (2, 0)]


@pytest.mark.parametrize(
    ("change", "is_commit_given_up", "level"),
    [
        ("assigned", False, logging.INFO),
        ("lost", False, logging.WARNING),
        ("lost", True, logging.INFO),
    ],
)
def test_partition_change_level(
    caplog: pytest.LogCaptureFixture, change: str, is_commit_given_up: bool, level: int
) -> None:
    log = logging.getLogger("partition-changes")
    partitions = [TopicPartition("events", 1), TopicPartition("events", 0)]

    with caplog.at_level(logging.DEBUG, logger=log.name):
        log_partition_change(
            log,
            change,
            "events",
            partitions,
            "g",
            is_commit_given_up=is_commit_given_up,
        )

    [record] = caplog.records
    assert record.levelno == level
    assert record.getMessage() == (
        f"partitions {change} topic=events partitions=[0, 1] group=g"
    )
