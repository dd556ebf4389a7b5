"""Background retries of a topic reader that cannot open yet."""

from __future__ import annotations

import logging
import threading

import pytest

from services.common.errors import BrokerUnreachableError, TopicMissingError
from services.common.topic_wait import retry_until_open

MISSING = TopicMissingError("topic 'events' is missing")


class _Opener:
    """Raises the queued errors in turn, then returns "reader"."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "reader"


class _RecordingStop(threading.Event):
    """A stop event whose wait returns at once and records the delay asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.delays: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.delays.append(timeout)
        return self.is_set()


def _retry(opener: _Opener, stop: _RecordingStop) -> str | None:
    return retry_until_open(
        opener,
        stop,
        reader="test reader",
        topic="events",
        first_error=MISSING,
        first_retry_seconds=1.0,
        max_retry_seconds=4.0,
    )


def test_retry_backs_off_to_the_maximum() -> None:
    stop = _RecordingStop()
    opener = _Opener([MISSING] * 4)

    assert _retry(opener, stop) == "reader"

    assert opener.calls == 5
    assert stop.delays == [1.0, 2.0, 4.0, 4.0, 4.0]


def test_retry_logs_one_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = _RecordingStop()
    unreachable = BrokerUnreachableError("no Kafka broker listens at 127.0.0.1:1")
    opener = _Opener([MISSING, unreachable, unreachable, MISSING])

    with caplog.at_level(logging.INFO, logger="services.common.topic_wait"):
        assert _retry(opener, stop) == "reader"

    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert caplog.messages[0].startswith(
        "test reader recovered, topic lookup succeeded topic=events "
    )
    assert "failed_attempts=5" in caplog.messages[0]


def test_retry_returns_none_once_stopped() -> None:
    stop = _RecordingStop()
    stop.set()
    opener = _Opener([])

    assert _retry(opener, stop) is None
    assert opener.calls == 0


def test_retry_raises_other_errors() -> None:
    stop = _RecordingStop()
    opener = _Opener([ValueError("bad settings")])

    with pytest.raises(ValueError, match="bad settings"):
        _retry(opener, stop)
