"""The bench's handling of hot-path processes, with stand-ins for processes."""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest

from services.bench import harness
from services.bench.harness import Bench, BenchProcessError, HotPathHandle


class StuckProcess:
    """A process that never reports and stops only when terminated."""

    pid = 4242

    def __init__(self) -> None:
        self.terminated = False

    def is_alive(self) -> bool:
        return not self.terminated

    def join(self, timeout: float | None = None) -> None:
        pass

    def terminate(self) -> None:
        self.terminated = True

    def kill(self) -> None:
        self.terminated = True


def test_finish_names_process_that_sent_no_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(harness, "_REPORT_TIMEOUT_SECONDS", 0.1)
    process = StuckProcess()
    handle = HotPathHandle((process,), threading.Event(), queue.Queue())
    # finish and kill use only the handle, so no servers are started.
    bench: Any = Bench.__new__(Bench)

    with pytest.raises(BenchProcessError) as raised:
        bench.finish(handle)

    message = str(raised.value)
    assert message.startswith("1 of 1 hot-path processes sent no report")
    assert "pids [4242]" in message
    assert process.terminated
    assert handle.stop.is_set()
