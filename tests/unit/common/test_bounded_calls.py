from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from services.common.bounded_calls import BoundedCalls


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Return an event that blocked calls wait on, set after the test so they end."""
    event = threading.Event()
    yield event
    event.set()


def test_run_returns_the_finished_call() -> None:
    calls = BoundedCalls(5.0, max_blocked=1, thread_name_prefix="test")

    finished = calls.run(lambda: 42, "answer")

    assert finished is not None
    assert finished.result() == 42
    assert calls.blocked == 0


def test_run_hands_over_call_error() -> None:
    calls = BoundedCalls(5.0, max_blocked=1, thread_name_prefix="test")

    def fail() -> int:
        raise OSError("volume gone")

    finished = calls.run(fail, "failing")

    assert finished is not None
    with pytest.raises(OSError, match="volume gone"):
        finished.result()


def test_run_counts_call_past_timeout_as_blocked(
    gate: threading.Event,
) -> None:
    calls = BoundedCalls(0.05, max_blocked=2, thread_name_prefix="test")

    finished = calls.run(gate.wait, "hung")

    assert finished is None
    assert calls.blocked == 1
    assert calls.can_start()


def test_can_start_false_at_max_blocked(
    gate: threading.Event,
) -> None:
    calls = BoundedCalls(0.05, max_blocked=1, thread_name_prefix="test")

    calls.run(gate.wait, "hung")

    assert not calls.can_start()


def test_forget_returned_frees_ended_call(
    gate: threading.Event,
) -> None:
    calls = BoundedCalls(0.05, max_blocked=1, thread_name_prefix="test")
    calls.run(gate.wait, "hung")
    gate.set()
    for thread in threading.enumerate():
        if thread.name == "test-hung":
            thread.join(5)

    returned = calls.forget_returned()

    assert [call.name for call in returned] == ["hung"]
    assert calls.blocked == 0
    assert calls.can_start()


def test_forget_returned_keeps_running_call(gate: threading.Event) -> None:
    calls = BoundedCalls(0.05, max_blocked=1, thread_name_prefix="test")
    calls.run(gate.wait, "hung")

    returned = calls.forget_returned()

    assert returned == []
    assert calls.blocked == 1


def test_bounded_calls_reject_zero_timeout() -> None:
    with pytest.raises(ValueError, match="timeout_seconds=0"):
        BoundedCalls(0, max_blocked=1, thread_name_prefix="test")
