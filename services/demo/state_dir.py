"""The demo's state folder: its servers' files and the run state cleared at start."""

from __future__ import annotations

import shutil
from pathlib import Path

from services.common.errors import InvalidSettingsError
from services.demo.settings import DemoSettings

__all__ = ["clear_run_state"]

# Sub-folders of the state folder that belong to one run.
_RUN_STATE = ("learner", "models", "feedback", "logs")

# A file that marks a state folder as the demo's, so that its run-state
# sub-folders may be deleted. A folder without it may hold a user's own
# folders of those names, such as a checkout's models/ package.
_STATE_MARKER = ".cartwheel-demo-state"


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
