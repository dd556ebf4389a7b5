"""Online signals for on-demand slates, read from the learner's checkpoints.

The hot path's learning stage writes its River models to
``<checkpoint folder>/<instance name>.ckpt`` atomically (a temporary file,
then a rename), with the first batch it learns from once
``CARTWHEEL_LEARNER_CHECKPOINT_INTERVAL_SECONDS`` have passed since the last
write. While no events arrive the file is not rewritten and ages.
:class:`CheckpointSignals` loads such a file and scores on-demand candidates
with it, as the learning stage scores the hot path's. A thread of its own
checks the file's modification time every ``reload_interval_seconds`` and
loads a changed file, so requests never wait for a load: they read one
reference, replaced once the new models are verified.

Several files: each hot-path instance learns from its own partitions (L-33)
and writes a file named after its instance. Unless an instance name is set,
the most recently written file is used. Its conversion models score any user,
but its affinity model has learned only the users of that instance's
partitions; for the others it gives its untrained score. Models of different
instances cannot be merged, and the API does not know which instance owns a
user's partition.

The files are only read: the API neither writes them nor takes the lock file
that the learner holds. A file that fails verification is skipped with a
WARNING until it changes, and the next newest file is tried, so a damaged or
foreign ``*.ckpt`` does not hide a valid older checkpoint. Models loaded
earlier stay in use until a newer file loads, even when their file is
deleted. Without them, a missing folder or file, or files that all fail
verification, leave on-demand slates without online signals (NaN, which
scoring treats as absent). Each such state logs one WARNING until it changes.
"""

from __future__ import annotations

import logging
import math
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.errors import CheckpointError, ModelStateError
from models.online import AffinityModel, ConversionModel, PrequentialEvaluator
from services.api.metrics import CHECKPOINT_AGE, CHECKPOINT_LOADS
from services.learner.checkpoints import load_evaluators
from services.learner.signals import (
    AFFINITY_MODEL,
    SIGNAL_MODELS,
    SIGNAL_NAMES,
    Requests,
    signal_matrix,
)

__all__ = ["CheckpointSignals"]

logger = logging.getLogger(__name__)

_KEY_SETTING = "CARTWHEEL_API_SIGNALS__CHECKPOINT_KEY"


@dataclass(frozen=True)
class _CheckpointFile:
    """One version of a checkpoint file: its path, mtime (ns) and size."""

    path: Path
    modified_ns: int
    size: int


@dataclass(frozen=True)
class _Loaded:
    file: _CheckpointFile
    evaluators: dict[str, PrequentialEvaluator]


class CheckpointSignals:
    """A read-only signal source over the learner's newest checkpoint.

    Args:
        directory: the learner's checkpoint folder.
        key: the learner's HMAC key, or None when its checkpoints carry a digest.
        instance_name: read only ``<instance_name>.ckpt``; None reads the most
            recently modified ``*.ckpt`` file of the folder.
        reload_interval_seconds: seconds between checks once started.
        clock: wall-clock Unix seconds, for the checkpoint's age.
    """

    def __init__(
        self,
        directory: Path,
        key: bytes | None,
        *,
        instance_name: str | None = None,
        reload_interval_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._directory = directory
        self._key = key
        self._instance_name = instance_name
        self._interval = reload_interval_seconds
        self._clock = clock
        self._loaded: _Loaded | None = None
        # The version of each file that failed verification, so that an
        # unchanged file is read once.
        self._rejected: dict[Path, _CheckpointFile] = {}
        self._warned: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def checkpoint_path(self) -> Path | None:
        """The file whose models are in use, None while none is loaded."""
        loaded = self._loaded
        return loaded.file.path if loaded is not None else None

    def checkpoint_age_seconds(self) -> float:
        """Return the seconds since the file in use was written, NaN without one."""
        loaded = self._loaded
        if loaded is None:
            return math.nan
        return max(0.0, self._clock() - loaded.file.modified_ns / 1e9)

    def signal_matrix(self, requests: Requests) -> np.ndarray:
        """Return the (N, 3) signals of the candidates, all NaN while none is loaded.

        See :func:`services.learner.signals.signal_matrix`.
        """
        loaded = self._loaded
        if loaded is None:
            total = sum(len(candidates) for _, _, candidates in requests)
            return np.full((total, len(SIGNAL_NAMES)), np.nan)
        return signal_matrix(loaded.evaluators, requests)

    def refresh(self) -> bool:
        """Load the newest valid checkpoint if files changed since the last check.

        Files newer than the one in use are tried newest first. A file that
        fails verification is skipped until it changes.

        Returns:
            True when other models are now in use.
        """
        if self._directory.exists() and not self._directory.is_dir():
            self._warn_once(
                "CARTWHEEL_API_SIGNALS__CHECKPOINT_DIR is not a directory, on-demand "
                "slates %s; set it to the learner's checkpoint folder "
                "checkpoint_dir=%s",
                self._fallback(),
                self._directory,
            )
            return False
        if not self._directory.exists():
            # Still a warning that is retried, because the learner creates the
            # folder when it starts, possibly after the API.
            self._warn_once(
                "no learner checkpoint found: the checkpoint folder does not "
                "exist yet, on-demand slates %s; it appears when the learner "
                "starts, or set CARTWHEEL_API_SIGNALS__CHECKPOINT_DIR to the "
                "learner's checkpoint folder checkpoint_dir=%s",
                self._fallback(),
                self._directory,
            )
            return False
        files = self._checkpoint_files()
        if not files:
            self._warn_once(
                "no learner checkpoint found, on-demand slates %s "
                "checkpoint_dir=%s instance_name=%s",
                self._fallback(),
                self._directory,
                self._instance_name,
            )
            return False
        self._rejected = {
            file.path: file for file in files if self._rejected.get(file.path) == file
        }
        return self._load_newest(files)

    def _load_newest(self, files: list[_CheckpointFile]) -> bool:
        """Load the newest valid file of ``files`` that is newer than the one in use."""
        skipped: list[str] = []
        for file in files:
            if self._loaded is not None and not _is_newer(file, self._loaded.file):
                return False
            if file.path in self._rejected:
                skipped.append(file.path.name)
                continue
            evaluators = self._verified(file)
            if evaluators is not None:
                self._install(file, evaluators, skipped)
                return True
            if file.path in self._rejected:
                skipped.append(file.path.name)
        if skipped:
            self._warn_once(
                "no learner checkpoint loaded, on-demand slates %s "
                "checkpoint_dir=%s skipped=%s",
                self._fallback(),
                self._directory,
                skipped,
            )
        return False

    def _fallback(self) -> str:
        """Describe what on-demand slates use while no newer checkpoint loads."""
        if self._loaded is not None:
            return f"keep the models loaded before from {self._loaded.file.path.name}"
        return "go without online signals until one loads"

    def _verified(
        self, file: _CheckpointFile
    ) -> dict[str, PrequentialEvaluator] | None:
        """Load and verify ``file``, or record it as rejected and return None."""
        try:
            return _load(file.path, self._key)
        except FileNotFoundError:
            # The file was renamed away between the listing and the read. It
            # is not recorded, so the next check reads whatever replaced it.
            return None
        except (CheckpointError, OSError) as exc:
            self._rejected[file.path] = file
            CHECKPOINT_LOADS.labels(outcome="rejected").inc()
            logger.warning(
                "learner checkpoint not loaded, older files are tried instead "
                "path=%s error=%s",
                file.path,
                exc,
            )
            return None

    def _install(
        self,
        file: _CheckpointFile,
        evaluators: dict[str, PrequentialEvaluator],
        skipped: list[str],
    ) -> None:
        self._loaded = _Loaded(file, evaluators)
        self._warned = None
        CHECKPOINT_LOADS.labels(outcome="loaded").inc()
        logger.info(
            "learner checkpoint loaded path=%s bytes=%d age_seconds=%.1f "
            "model_versions=%s skipped=%s",
            file.path,
            file.size,
            self.checkpoint_age_seconds(),
            {name: ev.model.model_version for name, ev in evaluators.items()},
            skipped,
        )

    def start(self) -> None:
        """Load the newest checkpoint now, then check for changes in a thread."""
        if self._thread is not None and self._thread.is_alive():
            return
        for outcome in ("loaded", "rejected", "failed"):
            CHECKPOINT_LOADS.labels(outcome=outcome)
        CHECKPOINT_AGE.set_function(self.checkpoint_age_seconds)
        self.refresh()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._follow, name="checkpoint-signals", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_seconds: float = 5.0) -> None:
        """Stop checking; the models in use stay available."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_seconds)

    def _follow(self) -> None:
        try:
            while not self._stop.wait(self._interval):
                self.refresh()
        except Exception:
            logger.exception(
                "checkpoint reloads stopped, on-demand slates keep the models in "
                "use until a restart checkpoint_dir=%s",
                self._directory,
            )
            CHECKPOINT_LOADS.labels(outcome="failed").inc()

    def _checkpoint_files(self) -> list[_CheckpointFile]:
        """Return the checkpoint files, most recently modified first."""
        if self._instance_name is not None:
            paths = [self._directory / f"{self._instance_name}.ckpt"]
        else:
            # The learner's temporary files end in .tmp and its lock files in
            # .lock, so the pattern leaves them out.
            paths = list(self._directory.glob("*.ckpt"))
        found = []
        for path in paths:
            try:
                info = path.stat()
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found.append(_CheckpointFile(path, info.st_mtime_ns, info.st_size))
        return sorted(found, key=_recency, reverse=True)

    def _warn_once(self, message: str, *args: object) -> None:
        text = message % args
        if text != self._warned:
            logger.warning(message, *args)
            self._warned = text


def _recency(file: _CheckpointFile) -> tuple[int, str]:
    """Order files by mtime, then by name, so that equal times order the same way."""
    return file.modified_ns, file.path.name


def _is_newer(file: _CheckpointFile, loaded: _CheckpointFile) -> bool:
    """Return whether ``file`` is another version newer than the one loaded."""
    return file != loaded and _recency(file) >= _recency(loaded)


def _load(path: Path, key: bytes | None) -> dict[str, PrequentialEvaluator]:
    """Read a checkpoint and check that it contains the three signal models.

    Raises:
        CheckpointError: the file fails verification or contains other models.
    """
    evaluators = load_evaluators(path, key, SIGNAL_MODELS, key_setting=_KEY_SETTING)
    for name in SIGNAL_MODELS:
        model = evaluators[name].model
        expected = AffinityModel if name == AFFINITY_MODEL else ConversionModel
        if not isinstance(model, expected):
            raise ModelStateError(
                f"{path} contains a {type(model).__name__} as the {name} model, "
                f"expected {expected.__name__}; point CARTWHEEL_API_SIGNALS__"
                "CHECKPOINT_DIR at the learner's checkpoint folder"
            )
    return evaluators
