"""Redelivered events of an earlier run whose commits are lost become duplicates."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from schemas.events import Event, EventType
from services.common.redis_features import AppliedResult, EventPosition, EventStatus
from services.hotpath.replays import EarlierRunFilter


def results(status: EventStatus, positions: list[EventPosition]) -> list[AppliedResult]:
    event = Event(
        event_id="e1",
        event_type=EventType.CLICK,
        user_id="u1",
        item_id="i1",
        event_time=datetime(2019, 10, 1, 12, tzinfo=UTC),
    )
    return [AppliedResult(event, status, {}, {}, p) for p in positions]


POSITIONS = [EventPosition(0, 0), EventPosition(0, 1), EventPosition(1, 0)]


def statuses(filtered: list[AppliedResult]) -> list[EventStatus]:
    return [result.status for result in filtered]


def test_redelivered_without_commits_become_duplicates(
    caplog: pytest.LogCaptureFixture,
) -> None:
    earlier_runs = EarlierRunFilter("events")
    earlier_runs.assigned([0, 1], {})

    with caplog.at_level(logging.WARNING, logger="services.hotpath.replays"):
        tried = earlier_runs.start_attempt(POSITIONS)
        filtered = earlier_runs.filter(
            results(EventStatus.REDELIVERED, POSITIONS), tried
        )

    assert statuses(filtered) == [EventStatus.DUPLICATE] * 3
    assert [r.getMessage().split(" topic=")[1] for r in caplog.records] == [
        "events partition=0 offset=0",
        "events partition=1 offset=0",
    ]


def test_redelivered_after_committed_offset_stay_redelivered() -> None:
    earlier_runs = EarlierRunFilter("events")
    earlier_runs.assigned([0, 1], {0: 0, 1: 0})

    tried = earlier_runs.start_attempt(POSITIONS)
    filtered = earlier_runs.filter(results(EventStatus.REDELIVERED, POSITIONS), tried)

    assert statuses(filtered) == [EventStatus.REDELIVERED] * 3


def test_unreadable_committed_offsets_filter_nothing() -> None:
    earlier_runs = EarlierRunFilter("events")
    earlier_runs.assigned([0, 1], None)

    tried = earlier_runs.start_attempt(POSITIONS)
    filtered = earlier_runs.filter(results(EventStatus.REDELIVERED, POSITIONS), tried)

    assert statuses(filtered) == [EventStatus.REDELIVERED] * 3


def test_retry_of_own_attempt_stays_redelivered() -> None:
    earlier_runs = EarlierRunFilter("events")
    earlier_runs.assigned([0, 1], {})
    # The first attempt failed before the store returned, as when Redis
    # drops the connection after applying part of the batch.
    earlier_runs.start_attempt(POSITIONS)

    tried = earlier_runs.start_attempt(POSITIONS)
    filtered = earlier_runs.filter(results(EventStatus.REDELIVERED, POSITIONS), tried)

    assert statuses(filtered) == [EventStatus.REDELIVERED] * 3


def test_new_events_pass_unchanged() -> None:
    earlier_runs = EarlierRunFilter("events")
    earlier_runs.assigned([0, 1], {})

    tried = earlier_runs.start_attempt(POSITIONS)
    filtered = earlier_runs.filter(results(EventStatus.APPLIED, POSITIONS), tried)

    assert statuses(filtered) == [EventStatus.APPLIED] * 3


def test_reassigned_partition_reads_its_commits_again() -> None:
    earlier_runs = EarlierRunFilter("events")
    earlier_runs.assigned([0, 1], {})
    earlier_runs.forget([0, 1])
    earlier_runs.assigned([0, 1], {0: 2, 1: 1})

    tried = earlier_runs.start_attempt(POSITIONS)
    filtered = earlier_runs.filter(results(EventStatus.REDELIVERED, POSITIONS), tried)

    assert statuses(filtered) == [EventStatus.REDELIVERED] * 3
