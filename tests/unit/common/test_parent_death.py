from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from services.common import parent_death
from services.common.parent_death import (
    has_exited,
    request_signal_on_parent_death,
    signal_on_parent_death,
)


def test_signal_on_parent_death_requests_nothing_outside_linux(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(parent_death.sys, "platform", "darwin")

    preexec = signal_on_parent_death(signal.SIGTERM)

    assert preexec is None


_PRINT_PARENT_DEATH_SIGNAL = """
import ctypes
signal_number = ctypes.c_int()
ctypes.CDLL(None).prctl(2, ctypes.byref(signal_number), 0, 0, 0)
print(signal_number.value)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_child_gets_requested_signal() -> None:
    preexec = signal_on_parent_death(signal.SIGINT)

    child = subprocess.run(
        [sys.executable, "-c", _PRINT_PARENT_DEATH_SIGNAL],
        preexec_fn=preexec,
        capture_output=True,
        text=True,
        check=True,
    )

    assert int(child.stdout) == signal.SIGINT


def test_request_signal_outside_child_raises() -> None:
    with pytest.raises(RuntimeError, match="called outside a multiprocessing child"):
        request_signal_on_parent_death(signal.SIGTERM)


def exited_child() -> subprocess.Popen[bytes]:
    """Start a child that exits at once, and return it once it has, unreaped.

    ``os.waitid`` is Linux only here, as the tests that call this are.
    """
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    # WNOWAIT waits for the exit but leaves the child a zombie.
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    return child


def test_has_exited_is_false_for_running_process() -> None:
    assert not has_exited(os.getpid())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_has_exited_is_true_for_unreaped_child() -> None:
    child = exited_child()

    is_exited = has_exited(child.pid)
    child.wait()

    assert is_exited


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_has_exited_is_true_for_reaped_process() -> None:
    child = exited_child()
    child.wait()

    assert has_exited(child.pid)


def test_has_exited_is_false_outside_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    monkeypatch.setattr(parent_death.sys, "platform", "darwin")

    assert not has_exited(child.pid)


_PRINT_REQUEST = (
    "from services.common.parent_death import has_parent_death_signal; "
    "print(has_parent_death_signal())"
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_tied_child_has_parent_death_signal() -> None:
    tied = subprocess.run(
        [sys.executable, "-c", _PRINT_REQUEST],
        preexec_fn=signal_on_parent_death(signal.SIGTERM),
        capture_output=True,
        text=True,
        check=True,
    )
    untied = subprocess.run(
        [sys.executable, "-c", _PRINT_REQUEST],
        capture_output=True,
        text=True,
        check=True,
    )

    assert tied.stdout.strip() == "True"
    assert untied.stdout.strip() == "False"
