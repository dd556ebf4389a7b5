"""The bounded log lines of a retry loop's outages."""

from __future__ import annotations

import logging

import pytest

from services.common.outage import OutageLog

LOGGER = "cartwheel.test.outage"
ERROR = ConnectionError("Connection refused")


class _Clock:
    """Monotonic seconds that move only when a test moves them."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> _Clock:
    return _Clock()


@pytest.fixture
def outage(clock: _Clock) -> OutageLog:
    return OutageLog(logging.getLogger(LOGGER), "redis", "batch", clock=clock)


def _fail_every(
    outage: OutageLog, clock: _Clock, seconds: float, *, until: float
) -> None:
    """Fail an attempt every ``seconds`` until the outage lasted ``until`` seconds."""
    started = clock.now
    while clock.now - started <= until:
        outage.failed(ERROR, seconds)
        clock.now += seconds


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno == level
    ]


def test_first_failure_warns_once(
    outage: OutageLog, clock: _Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _fail_every(outage, clock, 5.0, until=55.0)

    assert _messages(caplog, logging.WARNING) == [
        "redis failed, retrying batch delay_seconds=5.00 error=Connection refused"
    ]


def test_reminder_gaps_double_up_to_an_hour(
    outage: OutageLog, clock: _Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _fail_every(outage, clock, 5.0, until=4 * 3600.0)

    reminders = [m for m in _messages(caplog, logging.WARNING) if "still" in m]
    lasted = [float(m.split("failing_seconds=")[1].split()[0]) for m in reminders]
    assert lasted == [60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 3840.0, 7440.0, 11040.0]


def test_reminder_carries_latest_error(
    outage: OutageLog, clock: _Clock, caplog: pytest.LogCaptureFixture
) -> None:
    outage.failed(ERROR, 1.0)
    clock.now += 59.0
    outage.failed(ERROR, 2.0)
    clock.now += 1.0
    caplog.clear()

    with caplog.at_level(logging.INFO, logger=LOGGER):
        outage.failed(TimeoutError("Timeout reading from socket"), 4.0)

    assert _messages(caplog, logging.WARNING) == [
        "redis still failing, retrying batch failing_seconds=60.0 "
        "failed_attempts=3 delay_seconds=4.00 error=Timeout reading from socket"
    ]


def test_sparse_attempts_get_one_reminder(
    outage: OutageLog, clock: _Clock, caplog: pytest.LogCaptureFixture
) -> None:
    outage.failed(ERROR, 600.0)
    clock.now += 600.0
    caplog.clear()

    with caplog.at_level(logging.INFO, logger=LOGGER):
        outage.failed(ERROR, 600.0)
        clock.now += 400.0
        outage.failed(ERROR, 600.0)
        clock.now += 10.0
        outage.failed(ERROR, 600.0)

    lasted = [
        float(m.split("failing_seconds=")[1].split()[0])
        for m in _messages(caplog, logging.WARNING)
    ]
    assert lasted == [600.0, 1000.0]


def test_recovery_reports_duration_and_attempts(
    outage: OutageLog, clock: _Clock, caplog: pytest.LogCaptureFixture
) -> None:
    _fail_every(outage, clock, 0.5, until=4.0)
    caplog.clear()

    with caplog.at_level(logging.INFO, logger=LOGGER):
        outage.recovered()

    assert _messages(caplog, logging.INFO) == [
        "redis recovered, batch succeeded failing_seconds=4.5 failed_attempts=9"
    ]
    assert not outage.is_failing
    assert outage.failed_attempts == 0


def test_success_without_outage_is_silent(
    outage: OutageLog, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        outage.recovered()

    assert caplog.records == []


def test_outage_starts_afresh_after_recovery(
    outage: OutageLog, clock: _Clock, caplog: pytest.LogCaptureFixture
) -> None:
    _fail_every(outage, clock, 5.0, until=90.0)
    outage.recovered()
    clock.now += 30.0
    caplog.clear()

    with caplog.at_level(logging.INFO, logger=LOGGER):
        _fail_every(outage, clock, 5.0, until=55.0)
        outage.recovered()

    assert [m.split(" delay_seconds")[0] for m in caplog.messages] == [
        "redis failed, retrying batch",
        "redis recovered, batch succeeded failing_seconds=60.0 failed_attempts=12",
    ]


def test_caller_logged_failure_adds_no_line(
    outage: OutageLog, clock: _Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        outage.failed(ERROR, 1.0, is_logged=True)
        clock.now += 60.0
        outage.failed(ERROR, 2.0)

    [reminder] = caplog.messages
    assert reminder.startswith("redis still failing, retrying batch")
    assert "failed_attempts=2" in reminder


def test_context_appears_in_every_line(
    clock: _Clock, caplog: pytest.LogCaptureFixture
) -> None:
    outage = OutageLog(
        logging.getLogger(LOGGER),
        "kafka",
        "topic lookup",
        context={"topic": "events"},
        clock=clock,
    )

    with caplog.at_level(logging.INFO, logger=LOGGER):
        outage.failed(ERROR, 1.0)
        clock.now += 60.0
        outage.failed(ERROR, 2.0)
        outage.recovered()

    assert all(" topic=events " in m for m in caplog.messages)
    assert len(caplog.messages) == 3


def test_attempts_between_lines_log_at_debug(
    outage: OutageLog, clock: _Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        _fail_every(outage, clock, 5.0, until=60.0)

    assert [r.levelno for r in caplog.records] == (
        [logging.WARNING] + [logging.DEBUG] * 11 + [logging.WARNING]
    )
    assert caplog.messages[1].startswith(
        "redis failed again, retrying batch failed_attempts=2 delay_seconds=5.00 "
    )


def test_caller_without_retries_words_lines_by_consequence(
    clock: _Clock, caplog: pytest.LogCaptureFixture
) -> None:
    outage = OutageLog(
        logging.getLogger(LOGGER),
        "redis",
        "slate request",
        consequence="slate requests answer 503",
        clock=clock,
    )

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        outage.failed(ERROR)
        clock.now += 30.0
        outage.failed(ERROR)
        clock.now += 30.0
        outage.failed(ERROR)
        outage.recovered()

    assert caplog.messages == [
        "redis failed, slate requests answer 503 error=Connection refused",
        "redis failed again, slate requests answer 503 failed_attempts=2 "
        "error=Connection refused",
        "redis still failing, slate requests answer 503 failing_seconds=60.0 "
        "failed_attempts=3 error=Connection refused",
        "redis recovered, slate request succeeded failing_seconds=60.0 "
        "failed_attempts=3",
    ]
