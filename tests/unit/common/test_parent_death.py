from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from services.common import parent_death
from services.common.parent_death import (
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
