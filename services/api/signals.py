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
that the learner holds. A missing folder or file, or a file that fails
verification, leaves on-demand slates without online signals (NaN, which
scoring treats as absent) and logs one WARNING until the situation changes.
Models loaded earlier stay in use until a newer file loads.
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
class _Loaded:
    path: Path
    modified_ns: int
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
        # The (path, mtime, size) last tried, so an unchanged file is read once.
        self._tried: tuple[Path, int, int] | None = None
        self._warned: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def checkpoint_path(self) -> Path | None:
        """The file whose models are in use, None while none is loaded."""
        loaded = self._loaded
        return loaded.path if loaded is not None else None

    def checkpoint_age_seconds(self) -> float:
        """Return the seconds since the file in use was written, NaN without one."""
        loaded = self._loaded
        if loaded is None:
            return math.nan
        return max(0.0, self._clock() - loaded.modified_ns / 1e9)

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
        """Load the newest checkpoint when it changed since the last check.

        Returns:
            True when other models are now in use.
        """
        found = self._newest()
        if found is None:
            self._warn_once(
                "no learner checkpoint found, on-demand slates go without online "
                "signals until one appears checkpoint_dir=%s instance_name=%s",
                self._directory,
                self._instance_name,
            )
            return False
        path, modified_ns, size = found
        if self._tried == found:
            return False
        self._tried = found
        try:
            evaluators = _load(path, self._key)
        except FileNotFoundError:
            # The file was renamed away between the listing and the read, so
            # the next check reads whatever replaced it.
            self._tried = None
            return False
        except (CheckpointError, OSError) as exc:
            CHECKPOINT_LOADS.labels(outcome="rejected").inc()
            self._warn_once(
                "learner checkpoint not loaded, on-demand slates keep %s path=%s "
                "error=%s",
                "the models loaded before" if self._loaded else "no online signals",
                path,
                exc,
            )
            return False
        self._loaded = _Loaded(path, modified_ns, evaluators)
        self._warned = None
        CHECKPOINT_LOADS.labels(outcome="loaded").inc()
        logger.info(
            "learner checkpoint loaded path=%s bytes=%d age_seconds=%.1f "
            "model_versions=%s",
            path,
            size,
            self.checkpoint_age_seconds(),
            {name: ev.model.model_version for name, ev in evaluators.items()},
        )
        return True

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

    def _newest(self) -> tuple[Path, int, int] | None:
        """Return the newest checkpoint file with its mtime (ns) and size."""
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
                found.append((info.st_mtime_ns, path.name, path, info.st_size))
        if not found:
            return None
        modified_ns, _, path, size = max(found)
        return path, modified_ns, size

    def _warn_once(self, message: str, *args: object) -> None:
        text = message % args
        if text != self._warned:
            logger.warning(message, *args)
            self._warned = text


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
