"""Batch bookkeeping: events dropped as duplicates are logged."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from schemas.events import Event, EventType
from services.common.redis_features import AppliedResult, EventPosition, EventStatus
from services.hotpath import batch


def _result(event_id: str, status: EventStatus, offset: int) -> AppliedResult:
    event = Event(
        event_id=event_id,
        event_type=EventType.PURCHASE,
        user_id="u1",
        item_id="i1",
        event_time=datetime(2026, 1, 1, tzinfo=UTC),
    )
    return AppliedResult(event, status, {}, {}, EventPosition(2, offset))


def test_duplicates_are_logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The repeat filter is removed, so a line of an earlier test cannot hide this one.
    monkeypatch.setattr(batch._duplicates_logger, "filters", [])
    results = [
        _result("e1", EventStatus.APPLIED, 7),
        _result("e1", EventStatus.DUPLICATE, 8),
        _result("e2", EventStatus.REDELIVERED, 9),
    ]

    with caplog.at_level(logging.WARNING, logger=batch._duplicates_logger.name):
        batch.log_duplicates(results)

    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "event_id=e1 user_id=u1 event_type=purchase partition=2 offset=8" in (
        record.getMessage()
    )
