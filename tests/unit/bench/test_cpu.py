"""CPU accounting of the benchmark's processes, read from real Linux processes."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from services.bench.cpu import CpuAccount, CpuUnavailableError, process_cpu_seconds


def _spin(seconds: float) -> None:
    # This thread's CPU time: other threads of the test process also count in
    # the process's CPU time, and could end the loop before ``seconds`` of wall
    # time have passed.
    deadline = time.thread_time() + seconds
    while time.thread_time() < deadline:
        pass


def test_child_process_cpu_grows_while_it_computes() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nend = time.process_time() + 0.3\n"
            "while time.process_time() < end: pass\nimport sys; sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while process_cpu_seconds(child.pid) < 0.25:
            assert time.monotonic() < deadline, "the child used no CPU in 30 s"
            time.sleep(0.05)
    finally:
        child.communicate(b"")


def test_exited_process_is_reported_as_unavailable() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(CpuUnavailableError, match=f"process {child.pid} has exited"):
        process_cpu_seconds(child.pid)


def test_account_counts_each_group() -> None:
    running = CpuAccount.start({"this": [0], "empty group": []})
    _spin(0.2)
    account = running.stop()
    assert list(account.seconds) == ["this", "empty group"]
    assert account.seconds["this"] >= 0.2
    assert account.seconds["empty group"] == 0.0
    assert account.wall_seconds >= 0.2


def test_per_event_and_cores_busy_are_simple_ratios() -> None:
    account = CpuAccount({"hot path": 1.5, "redis-server": 0.5}, wall_seconds=2.0)
    assert account.per_event_us(1000) == {"hot path": 1500.0, "redis-server": 500.0}
    assert account.cores_busy == 1.0
    assert CpuAccount({"hot path": 1.0}, wall_seconds=0.0).cores_busy == 0.0
