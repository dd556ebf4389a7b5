"""The stop deadline of the feedback worker and the signals that start it."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from services.common.errors import InvalidSettingsError
from services.common.settings import load_settings
from services.feedback import worker as worker_module
from services.feedback.app import create_app
from services.feedback.early_signals import EarlySignals
from services.feedback.settings import FeedbackSettings
from services.feedback.worker import (
    FeedbackWorker,
    StartUpStopped,
    StopDeadline,
    StopSignals,
    run_start_up,
)


class RecordedExit:
    """Stands in for ``os._exit``: records the status and wakes the test."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.called = threading.Event()

    def __call__(self, status: int) -> None:
        self.statuses.append(status)
        self.called.set()


class RecordedDeadline(StopDeadline):
    def __init__(self) -> None:
        super().__init__(60.0)
        self.reasons: list[str] = []

    def start(self, reason: str) -> None:
        self.reasons.append(reason)


@pytest.fixture
def kept_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the test session's log handlers open when the deadline passes."""
    monkeypatch.setattr(logging, "shutdown", lambda: None)


def deadline_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "feedback-stop-deadline"]


@pytest.mark.usefixtures("kept_logging")
def test_stop_deadline_exits_with_status_2(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exit_now = RecordedExit()
    deadline = StopDeadline(0.01, exit_now=exit_now)

    with caplog.at_level(logging.ERROR, logger="services.feedback.worker"):
        deadline.start("SIGTERM")
        has_exited = exit_now.called.wait(timeout=10)

    assert has_exited
    assert exit_now.statuses == [2]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "gave up waiting for the broker" in errors[0].getMessage()
    assert "reason=SIGTERM" in errors[0].getMessage()


def test_stop_deadline_starts_once() -> None:
    deadline = StopDeadline(600.0, exit_now=RecordedExit())
    # Deadlines of earlier tests may still be watching.
    earlier = set(deadline_threads())

    deadline.start("SIGTERM")
    deadline.start("SIGINT")
    running = [thread for thread in deadline_threads() if thread not in earlier]
    deadline.cancel()

    assert len(running) == 1
    assert running[0].daemon


@pytest.mark.usefixtures("kept_logging")
def test_stop_deadline_keeps_first_reason(caplog: pytest.LogCaptureFixture) -> None:
    exit_now = RecordedExit()
    deadline = StopDeadline(0.01, exit_now=exit_now, check_seconds=0.01)

    with caplog.at_level(logging.ERROR, logger="services.feedback.worker"):
        deadline.start("SIGTERM")
        deadline.start("SIGINT")
        has_exited = exit_now.called.wait(timeout=10)

    assert has_exited
    assert exit_now.statuses == [2]
    assert "reason=SIGTERM" in caplog.records[-1].getMessage()


def test_stop_deadline_start_takes_no_thread_after_watch() -> None:
    deadline = StopDeadline(600.0, exit_now=RecordedExit())
    deadline.watch()
    threads_before = threading.active_count()

    deadline.start("SIGTERM")
    threads_after = threading.active_count()
    deadline.cancel()

    assert threads_after == threads_before


def test_stop_deadline_cancel_prevents_exit() -> None:
    exit_now = RecordedExit()
    deadline = StopDeadline(0.05, exit_now=exit_now, check_seconds=0.01)

    deadline.start("SIGTERM")
    deadline.cancel()
    has_exited = exit_now.called.wait(timeout=0.3)

    assert not has_exited
    assert exit_now.statuses == []


@pytest.fixture
def kept_signal_handlers() -> Iterator[None]:
    """Put the test session's SIGTERM and SIGINT handlers back after the test."""
    stop_signals = (signal.SIGTERM, signal.SIGINT)
    previous = {
        stop_signal: signal.getsignal(stop_signal) for stop_signal in stop_signals
    }
    yield
    for stop_signal, handler in previous.items():
        signal.signal(stop_signal, handler)


@pytest.fixture
def worker() -> Iterator[tuple[FeedbackWorker, RecordedDeadline]]:
    app, _ = create_app(FeedbackSettings())
    deadline = RecordedDeadline()
    loop = asyncio.new_event_loop()
    feedback_worker = FeedbackWorker(
        app,
        stop_deadline=deadline,
        stop_signals=StopSignals(deadline),
        loop=loop,
        quiet=True,
        override_logging=False,
    )
    yield feedback_worker, deadline
    future = feedback_worker._signal_stop_future
    if future is not None:
        future.cancel()
        loop.run_until_complete(asyncio.gather(future, return_exceptions=True))
    loop.close()


@pytest.mark.parametrize("signal_handler", ["_on_sigterm", "_on_sigint"])
def test_worker_starts_deadline_on_signal(
    worker: tuple[FeedbackWorker, RecordedDeadline], signal_handler: str
) -> None:
    feedback_worker, deadline = worker
    expected = "SIGTERM" if signal_handler == "_on_sigterm" else "SIGINT"

    getattr(feedback_worker, signal_handler)()

    assert deadline.reasons == [expected]


@pytest.mark.parametrize("value", ["0", "-1", "1e-9", "4.9", "3601", "soon"])
def test_stop_timeout_rejects_invalid_value(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CARTWHEEL_FEEDBACK_STOP_TIMEOUT_SECONDS", value)

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(FeedbackSettings)

    message = str(caught.value)
    assert f"CARTWHEEL_FEEDBACK_STOP_TIMEOUT_SECONDS={value!r}" in message
    assert "expected a number from 5 to 3600" in message
    assert len(message.splitlines()) == 1


def test_run_start_up_returns_result() -> None:
    deadline = RecordedDeadline()

    result = run_start_up(lambda: 42, StopSignals(deadline))

    assert result == 42
    assert deadline.reasons == []


def test_run_start_up_raises_start_up_error() -> None:
    def fail() -> None:
        raise InvalidSettingsError("topic missing")

    with pytest.raises(InvalidSettingsError, match="topic missing"):
        run_start_up(fail, StopSignals(RecordedDeadline()))


@pytest.mark.usefixtures("kept_signal_handlers")
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_run_start_up_stops_on_signal_while_blocked(
    stop_signal: signal.Signals,
) -> None:
    # The start-up blocks until the test ends it, like a metadata request to a
    # broker that never responds.
    release = threading.Event()
    deadline = RecordedDeadline()
    stop_signals = StopSignals(deadline)
    stop_signals.install()
    sender = threading.Timer(0.2, os.kill, args=(os.getpid(), stop_signal))

    sender.start()
    try:
        with pytest.raises(StartUpStopped) as caught:
            run_start_up(lambda: release.wait(30), stop_signals)
    finally:
        release.set()
        sender.join()

    assert caught.value.reason == stop_signal.name
    assert deadline.reasons == [stop_signal.name]


@pytest.mark.usefixtures("kept_signal_handlers")
def test_run_start_up_stops_after_earlier_signal() -> None:
    deadline = RecordedDeadline()
    stop_signals = StopSignals(deadline)
    stop_signals.install()
    started: list[str] = []

    signal.raise_signal(signal.SIGTERM)
    with pytest.raises(StartUpStopped) as caught:
        run_start_up(lambda: started.append("checks"), stop_signals)

    assert caught.value.reason == "SIGTERM"
    assert started == []
    assert deadline.reasons == ["SIGTERM"]


@pytest.mark.usefixtures("kept_signal_handlers")
def test_signal_noted_while_loading_stops_start_up() -> None:
    early = EarlySignals()
    early.install()
    signal.raise_signal(signal.SIGINT)
    signal.raise_signal(signal.SIGTERM)
    deadline = RecordedDeadline()
    stop_signals = StopSignals(deadline)
    started: list[str] = []

    stop_signals.install(lambda: early.received)
    with pytest.raises(StartUpStopped) as caught:
        run_start_up(lambda: started.append("checks"), stop_signals)

    assert early.received is signal.SIGINT
    assert caught.value.reason == "SIGINT"
    assert started == []
    assert deadline.reasons == ["SIGINT"]


@pytest.mark.usefixtures("kept_signal_handlers")
def test_signal_during_install_is_handled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    early = EarlySignals()
    early.install()
    deadline = RecordedDeadline()
    stop_signals = StopSignals(deadline)
    set_handler = signal.signal

    def signal_then_set_handler(signal_number: int, handler: Any) -> Any:
        # The signal arrives just before the new handler is in place.
        if signal_number == signal.SIGTERM:
            signal.raise_signal(signal.SIGTERM)
        return set_handler(signal_number, handler)

    monkeypatch.setattr(signal, "signal", signal_then_set_handler)
    stop_signals.install(lambda: early.received)

    assert early.received is signal.SIGTERM
    assert stop_signals.requested is signal.SIGTERM
    assert deadline.reasons == ["SIGTERM"]


@pytest.mark.usefixtures("kept_signal_handlers")
def test_signal_after_start_up_is_kept_for_worker() -> None:
    deadline = RecordedDeadline()
    stop_signals = StopSignals(deadline)
    stop_signals.install()
    run_start_up(lambda: None, stop_signals)

    signal.raise_signal(signal.SIGTERM)

    assert stop_signals.requested is signal.SIGTERM
    assert deadline.reasons == ["SIGTERM"]
    assert signal.getsignal(signal.SIGTERM) == stop_signals._handle


def test_worker_stops_at_start_after_earlier_signal(
    worker: tuple[FeedbackWorker, RecordedDeadline],
) -> None:
    feedback_worker, deadline = worker
    feedback_worker._stop_signals.requested = signal.SIGTERM

    feedback_worker.install_signal_handlers()
    feedback_worker.loop.run_until_complete(asyncio.sleep(0))

    assert feedback_worker._signal_stop_future is not None
    assert deadline.reasons == ["SIGTERM"]


def test_worker_ignores_signal_after_loop_closed(
    worker: tuple[FeedbackWorker, RecordedDeadline],
) -> None:
    feedback_worker, deadline = worker
    feedback_worker.install_signal_handlers()
    feedback_worker.loop.close()

    feedback_worker._forward_stop(signal.SIGTERM)

    assert feedback_worker._signal_stop_future is None
    assert deadline.reasons == []


def reaped_process_id() -> int:
    """Return the pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stop_signals_log_stop_at_info_while_parent_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop_signals = StopSignals(RecordedDeadline())

    with caplog.at_level(logging.INFO, logger="services.feedback.worker"):
        stop_signals.log_stop(signal.SIGTERM)

    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "stop requested signal=SIGTERM")
    ]


def test_stop_signals_log_parent_exit_as_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "has_parent_death_signal", lambda: True)
    parent_pid = reaped_process_id()
    stop_signals = StopSignals(RecordedDeadline(), parent_pid=parent_pid)

    with caplog.at_level(logging.INFO, logger="services.feedback.worker"):
        stop_signals.log_stop(signal.SIGTERM)

    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.WARNING,
            f"parent process exited, stopping signal=SIGTERM parent_pid={parent_pid}",
        )
    ]


def test_untied_worker_of_exited_shell_logs_info(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "has_parent_death_signal", lambda: False)
    stop_signals = StopSignals(RecordedDeadline(), parent_pid=reaped_process_id())

    with caplog.at_level(logging.INFO, logger="services.feedback.worker"):
        stop_signals.log_stop(signal.SIGTERM)

    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "stop requested signal=SIGTERM")
    ]


def test_stop_signals_log_stop_once(caplog: pytest.LogCaptureFixture) -> None:
    stop_signals = StopSignals(RecordedDeadline())

    with caplog.at_level(logging.INFO, logger="services.feedback.worker"):
        stop_signals.log_stop(signal.SIGTERM)
        stop_signals.log_stop(signal.SIGINT)

    assert caplog.messages == ["stop requested signal=SIGTERM"]


def test_worker_logs_forwarded_signal_and_stops(
    worker: tuple[FeedbackWorker, RecordedDeadline],
    caplog: pytest.LogCaptureFixture,
) -> None:
    feedback_worker, deadline = worker

    with caplog.at_level(logging.INFO, logger="services.feedback.worker"):
        feedback_worker._forward_stop(signal.SIGTERM)
        feedback_worker.loop.run_until_complete(asyncio.sleep(0))

    assert caplog.messages == ["stop requested signal=SIGTERM"]
    assert feedback_worker._signal_stop_future is not None
    assert deadline.reasons == ["SIGTERM"]
