"""The demo's state folder: its servers' files, its lock and the run state.

Two demos sharing a state folder would delete each other's run state and
find each other's broker through its pid file. A demo therefore keeps an
exclusive ``flock`` on a file in the folder for as long as it runs. The
kernel releases the lock when the process ends, however it ends, so a demo
killed with SIGKILL never blocks the next one. The file also records the
holder's pid and start time, but only to name them in the error that a
second demo raises: the lock itself is what shows that a demo runs.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from services.common.errors import InfrastructureError, InvalidSettingsError
from services.demo.settings import DemoSettings

__all__ = ["LOCK_FILE", "DemoLock", "DemoRunningError", "clear_run_state"]

# Sub-folders of the state folder that belong to one run.
_RUN_STATE = ("learner", "models", "feedback", "logs")

# A file that marks a state folder as the demo's, so that its run-state
# sub-folders may be deleted. A folder without it may hold a user's own
# folders of those names, such as a checkout's models/ package.
_STATE_MARKER = ".cartwheel-demo-state"

# The file that a running demo locks; the lock is dropped, the file kept.
LOCK_FILE = "demo.lock"


def clear_run_state(state_dir: Path) -> None:
    """Delete the run-state sub-folders of an earlier run and mark the folder.

    Every run starts from empty servers, so state that an earlier run left
    (online-model checkpoints, ranker artifacts, feedback files) would let
    the models start out knowing the events they are about to see.

    Raises:
        InvalidSettingsError: the folder has a sub-folder of a run-state name
            but no marker of an earlier run, so it may be someone else's. The
            default folder is exempt, because runs before the marker existed
            left it unmarked and only the demo writes there by default.
    """
    marker = state_dir / _STATE_MARKER
    default_dir = Path(DemoSettings.model_fields["state_dir"].default).resolve()
    if state_dir != default_dir and not marker.is_file():
        foreign = [name for name in _RUN_STATE if (state_dir / name).exists()]
        if foreign:
            names = ", ".join(f"{name}/" for name in foreign)
            raise InvalidSettingsError(
                f"invalid setting CARTWHEEL_DEMO_STATE_DIR={str(state_dir)!r}: "
                f"it contains {names}, which the demo deletes at start, but no "
                f"{_STATE_MARKER} file of an earlier demo run; expected a new "
                "or empty folder, or one that an earlier demo run used"
            )
    for leftover in _RUN_STATE:
        shutil.rmtree(state_dir / leftover, ignore_errors=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(
        "cartwheel demo state: each demo run deletes "
        f"{', '.join(_RUN_STATE)} in this folder\n"
    )


class DemoRunningError(InfrastructureError):
    """Raised when another demo holds the lock of the same state folder."""


class DemoLock:
    """The exclusive lock of a demo's state folder, released on exit.

    Use it as a context manager around the demo, and call :meth:`acquire`
    once the folder exists. Leaving the block releases the lock if it is held.

    Args:
        state_dir: the demo's state folder; the lock file is created in it.
    """

    def __init__(self, state_dir: Path) -> None:
        self._state_dir = state_dir
        self.path = state_dir / LOCK_FILE
        self._descriptor: int | None = None

    @property
    def is_held(self) -> bool:
        return self._descriptor is not None

    def acquire(self) -> None:
        """Take the lock without waiting and record this process in the file.

        Calling it again while the lock is held does nothing.

        Raises:
            DemoRunningError: another process holds the lock; the message
                names its pid and start time and how to stop it.
            InvalidSettingsError: the lock file cannot be created or opened
                for writing.
        """
        if self._descriptor is not None:
            return
        try:
            # No O_TRUNC, because the holder's pid must survive a failed try.
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InvalidSettingsError(
                "invalid setting CARTWHEEL_DEMO_STATE_DIR="
                f"{str(self._state_dir)!r}: opening its {LOCK_FILE} failed: "
                f"{exc.strerror or exc}; expected a folder where this process "
                "can create and write files"
            ) from exc
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(descriptor, 200).decode("utf-8", "replace")
            os.close(descriptor)
            raise DemoRunningError(self._running_message(holder)) from None
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()} {started_at}\n".encode())
        self._descriptor = descriptor

    def release(self) -> None:
        """Release the lock if it is held; the file stays for the next demo."""
        if self._descriptor is None:
            return
        # Closing the descriptor drops the lock.
        os.close(self._descriptor)
        self._descriptor = None

    def __enter__(self) -> DemoLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def _running_message(self, holder: str) -> str:
        fields = holder.split()
        if len(fields) < 2 or not fields[0].isdigit():
            # The holder has locked the file but not yet written its pid.
            return (
                f"another cartwheel demo is running in {self._state_dir} (it "
                f"locks {self.path}); wait for it or stop it with Ctrl-C"
            )
        pid, started_at = fields[0], fields[1]
        return (
            f"another cartwheel demo is running in {self._state_dir} "
            f"(pid {pid}, started at {started_at}); wait for it or stop it "
            f"with Ctrl-C or 'kill -TERM {pid}'"
        )
