from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.cli.__main__ import main
from services.common.errors import InvalidSettingsError
from services.demo import runner
from services.demo.settings import DemoSettings
from services.demo.state_dir import (
    LOCK_FILE,
    DemoLock,
    DemoRunningError,
    clear_run_state,
)

# Takes the demo lock of the folder in argv[1], prints "locked" and keeps it until
# its stdin closes.
_HOLDER = """
import sys
from pathlib import Path
from services.demo.state_dir import DemoLock

with DemoLock(Path(sys.argv[1])) as lock:
    lock.acquire()
    print("locked", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def hold_lock() -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    """Start processes that each hold the demo lock of a folder until the test ends."""
    holders: list[subprocess.Popen[str]] = []

    def start(state_dir: Path) -> subprocess.Popen[str]:
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(state_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        holders.append(holder)
        assert holder.stdout is not None
        assert holder.stdout.readline() == "locked\n"
        return holder

    yield start
    for holder in holders:
        if holder.poll() is None:
            holder.communicate(timeout=10)


def test_foreign_models_folder_is_kept(tmp_path: Path) -> None:
    source = tmp_path / "models" / "ranker.py"
    source.parent.mkdir()
    source.write_text("print('mine')\n")

    with pytest.raises(InvalidSettingsError) as caught:
        clear_run_state(tmp_path)

    message = str(caught.value)
    assert "CARTWHEEL_DEMO_STATE_DIR" in message
    assert repr(str(tmp_path)) in message
    assert "models/" in message
    assert len(message.splitlines()) == 1
    assert source.read_text() == "print('mine')\n"


def test_earlier_run_state_is_cleared(tmp_path: Path) -> None:
    clear_run_state(tmp_path)
    for name in ("learner", "models", "feedback", "logs"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "old").write_text("")
    broker_log = tmp_path / "tansu.log"
    broker_log.write_text("")

    clear_run_state(tmp_path)

    assert sorted(path.name for path in tmp_path.iterdir()) == [
        ".cartwheel-demo-state",
        "tansu.log",
    ]


def test_new_folder_is_created_and_marked(tmp_path: Path) -> None:
    state_dir = tmp_path / "new" / "state"

    clear_run_state(state_dir)

    assert (state_dir / ".cartwheel-demo-state").is_file()


def test_folder_without_run_state_is_used(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("keep")

    clear_run_state(tmp_path)

    assert notes.read_text() == "keep"
    assert (tmp_path / ".cartwheel-demo-state").is_file()


def test_unmarked_default_folder_is_cleared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    state_dir = (tmp_path / ".cartwheel" / "demo").resolve()
    (state_dir / "models").mkdir(parents=True)

    clear_run_state(state_dir)

    assert not (state_dir / "models").exists()
    assert (state_dir / ".cartwheel-demo-state").is_file()


_SECOND_DEMO = """
import sys
from services.cli.__main__ import main
status = main(["demo", "--limit", "2"])
print(status, "services.demo.runner" in sys.modules)
"""


def test_second_demo_exits_before_loading_runner(
    hold_lock: Callable[[Path], subprocess.Popen[str]], tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    clear_run_state(state_dir)
    hold_lock(state_dir)
    environment = {**os.environ, "CARTWHEEL_DEMO_STATE_DIR": str(state_dir)}

    second = subprocess.run(
        [sys.executable, "-c", _SECOND_DEMO],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert second.stdout.split() == ["2", "False"]
    assert "another cartwheel demo is running" in second.stderr


def test_demo_exits_while_another_demo_runs(
    hold_lock: Callable[[Path], subprocess.Popen[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state_dir = tmp_path / "state"
    clear_run_state(state_dir)
    checkpoint = state_dir / "learner" / "checkpoint"
    checkpoint.parent.mkdir()
    checkpoint.write_text("first demo's")
    holder = hold_lock(state_dir)
    started: list[str] = []
    monkeypatch.setattr(runner, "start_broker", lambda *args: started.append("broker"))
    monkeypatch.setenv("CARTWHEEL_DEMO_STATE_DIR", str(state_dir))

    status = main(["demo", "--limit", "2"])

    error = capsys.readouterr().err
    assert status == 2
    assert error.startswith("cartwheel: error: another cartwheel demo is running in ")
    assert f"(pid {holder.pid}, started at " in error
    assert f"'kill -TERM {holder.pid}'" in error
    assert started == []
    assert checkpoint.read_text() == "first demo's"
    assert (state_dir / LOCK_FILE).read_text().split()[0] == str(holder.pid)


def test_lock_is_free_after_holder_killed(
    hold_lock: Callable[[Path], subprocess.Popen[str]], tmp_path: Path
) -> None:
    holder = hold_lock(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)

    with DemoLock(tmp_path) as lock:
        lock.acquire()

        assert lock.is_held
        assert (tmp_path / LOCK_FILE).read_text().split()[0] == str(os.getpid())


def test_lock_is_free_after_release(tmp_path: Path) -> None:
    with DemoLock(tmp_path) as first:
        first.acquire()

    with DemoLock(tmp_path) as second:
        second.acquire()

        assert second.is_held


def test_lock_error_without_holder_pid(tmp_path: Path) -> None:
    with DemoLock(tmp_path) as holder:
        holder.acquire()
        (tmp_path / LOCK_FILE).write_text("")

        with pytest.raises(DemoRunningError, match="wait for it") as caught:
            DemoLock(tmp_path).acquire()

    assert "(pid " not in str(caught.value)
    assert str(tmp_path / LOCK_FILE) in str(caught.value)


def test_lock_rejects_unopenable_path(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).mkdir()

    with pytest.raises(InvalidSettingsError) as caught:
        DemoLock(tmp_path).acquire()

    message = str(caught.value)
    assert message.startswith("invalid setting CARTWHEEL_DEMO_STATE_DIR=")
    assert "Is a directory" in message


def test_demo_locks_new_folder_before_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_dir = tmp_path / "new"
    outcomes: list[str] = []

    def start_broker(*args: object) -> None:
        try:
            DemoLock(state_dir).acquire()
        except DemoRunningError:
            outcomes.append("locked")
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "start_broker", start_broker)
    settings = DemoSettings(state_dir=state_dir, report_dir=tmp_path / "report")

    with pytest.raises(KeyboardInterrupt):
        runner.run_demo(runner.DemoRun(dataset="rees46", limit=2), settings)

    assert outcomes == ["locked"]
    with DemoLock(state_dir) as lock:
        lock.acquire()
