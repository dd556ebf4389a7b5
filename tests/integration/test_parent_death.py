"""Demo children, bench processes and servers end when their owner is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.settings import child_environment

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="parent death signal is Linux only"
    ),
]

_REPOSITORY = Path(__file__).resolve().parents[2]

# A child that stays up for a minute unless a signal ends it.
_SUPERVISOR_PARENT = """
import sys, time
from pathlib import Path
from services.demo.supervisor import Supervisor

supervisor = Supervisor(Path(sys.argv[1]), {})
service = supervisor.start(
    "sleeper", "timeit", "-n", "1", "-r", "1", "-s", "import time", "time.sleep(60)"
)
print(service.process.pid, flush=True)
time.sleep(60)
"""

_SERVER_PARENT = """
import sys, time
from pathlib import Path
from services.infra import find_free_port, start_redis

server = start_redis(Path(sys.argv[1]), find_free_port())
print(server.pid(), flush=True)
time.sleep(60)
"""

# The child of the two parents below: it writes its pid, which the test reads,
# once its request for the signal is made, then waits for a minute.
_SLEEPER = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"

# The bench's hot-path processes are started as this one is.
_SPAWNING_PARENT = f"""
import multiprocessing, signal, time
from services.common.parent_death import start_tied_process

context = multiprocessing.get_context("spawn")
start_tied_process(context, exec, ({_SLEEPER!r},), signal.SIGKILL)
time.sleep(60)
"""

_POOL_PARENT = f"""
import signal
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from services.common.parent_death import request_signal_on_parent_death

with ProcessPoolExecutor(
    1,
    mp_context=get_context("spawn"),
    initializer=request_signal_on_parent_death,
    initargs=(signal.SIGTERM,),
) as pool:
    pool.submit(exec, {_SLEEPER!r}).result()
"""


@pytest.fixture
def start_parent() -> Iterator[list[subprocess.Popen[str]]]:
    """Parents started by the test, killed at teardown if still running."""
    parents: list[subprocess.Popen[str]] = []
    yield parents
    for parent in parents:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def _child_of_killed_parent(
    code: str, folder: Path, parents: list[subprocess.Popen[str]]
) -> int:
    """Run ``code`` as a parent, read its child's pid, then SIGKILL the parent.

    Returns:
        The pid of the child.
    """
    parent = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=_REPOSITORY,
        env=child_environment({"PYTHONPATH": str(_REPOSITORY)}),
    )
    parents.append(parent)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    assert _is_running(child_pid)

    parent.send_signal(signal.SIGKILL)
    parent.wait()
    return child_pid


def _is_running(pid: int) -> bool:
    """Return True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _wait_until_gone(pid: int, timeout_seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_seconds
    while _is_running(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize(
    "parent_code",
    [_SUPERVISOR_PARENT, _SERVER_PARENT, _SPAWNING_PARENT, _POOL_PARENT],
    ids=["demo-service", "local-server", "spawned-process", "pool-worker"],
)
def test_child_exits_when_its_owner_is_killed(
    tmp_path: Path, start_parent: list[subprocess.Popen[str]], parent_code: str
) -> None:
    child_pid = _child_of_killed_parent(parent_code, tmp_path, start_parent)

    is_gone = _wait_until_gone(child_pid)

    assert is_gone
