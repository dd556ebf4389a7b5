"""Saving and restoring the learning stage's models, with verification.

A missing checkpoint starts the stage fresh quietly, as on a first start. A
checkpoint that fails verification or contains unexpected state starts it
fresh with a WARNING, because learning from scratch is safer than loading
bytes that may have been modified.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from pathlib import Path

from models.errors import CheckpointError, ModelStateError
from models.online import PrequentialEvaluator, read_checkpoint, write_checkpoint
from services.learner import metrics

__all__ = [
    "LEARNER_KEY_SETTING",
    "load_evaluators",
    "restore_evaluators",
    "save_evaluators",
]

logger = logging.getLogger(__name__)

_FORMAT = "cartwheel-learner-v1"

LEARNER_KEY_SETTING = "CARTWHEEL_LEARNER_CHECKPOINT_KEY"
"""The variable that contains the key the learner signs its checkpoints with."""


def save_evaluators(
    path: Path, evaluators: Mapping[str, PrequentialEvaluator], key: bytes | None
) -> int:
    """Write every model with its prequential state; return the file's size."""
    size = write_checkpoint(
        path, {"format": _FORMAT, "evaluators": dict(evaluators)}, key
    )
    metrics.CHECKPOINTS.labels(outcome="written").inc()
    return size


def restore_evaluators(
    path: Path,
    key: bytes | None,
    strict: bool = False,
    expected_names: Collection[str] | None = None,
    key_setting: str = LEARNER_KEY_SETTING,
) -> dict[str, PrequentialEvaluator] | None:
    """Return the models saved at ``path``, or None to start fresh.

    None means there is no checkpoint, or that it was rejected; a rejection
    is logged at WARNING with the reason and counted.

    Args:
        path: the checkpoint file.
        key: the HMAC key, or None for digest mode.
        strict: raise a rejection instead of returning None.
        expected_names: model names the checkpoint must contain; a checkpoint
            with other names is rejected.
        key_setting: the setting that contains ``key``, for error messages.

    Raises:
        CheckpointError: only with ``strict``, when the checkpoint is rejected.
    """
    if not path.exists():
        logger.info("no checkpoint, starting fresh path=%s", path)
        return None
    try:
        evaluators = load_evaluators(path, key, expected_names, key_setting)
    except CheckpointError as exc:
        if strict:
            raise
        logger.warning(
            "checkpoint rejected, starting fresh path=%s error=%s; the next "
            "checkpoint overwrites this file, so to keep its models fix the "
            "cause and restart before then",
            path,
            exc,
        )
        metrics.CHECKPOINTS.labels(outcome="rejected").inc()
        return None
    metrics.CHECKPOINTS.labels(outcome="restored").inc()
    logger.info(
        "checkpoint restored path=%s model_versions=%s",
        path,
        {name: ev.model.model_version for name, ev in evaluators.items()},
    )
    return evaluators


def load_evaluators(
    path: Path,
    key: bytes | None,
    expected_names: Collection[str] | None = None,
    key_setting: str = LEARNER_KEY_SETTING,
) -> dict[str, PrequentialEvaluator]:
    """Read and verify the models saved at ``path``; log and count nothing.

    Args:
        path: the checkpoint file.
        key: the HMAC key, or None for digest mode.
        expected_names: model names the checkpoint must contain; a checkpoint
            with other names is rejected.
        key_setting: the setting that contains ``key``, for error messages.

    Raises:
        FileNotFoundError: there is no checkpoint at ``path``.
        CheckpointError: the checkpoint fails verification or contains other state.
    """
    evaluators = _check_state(read_checkpoint(path, key, key_setting), path)
    if expected_names is not None and set(evaluators) != set(expected_names):
        raise ModelStateError(
            f"{path} contains the models {sorted(evaluators)}; expected "
            f"{sorted(expected_names)}"
        )
    return evaluators


def _check_state(state: object, path: Path) -> dict[str, PrequentialEvaluator]:
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise ModelStateError(
            f"{path} is a Cartwheel checkpoint but contains no learner state in "
            f"format {_FORMAT!r}"
        )
    evaluators = state.get("evaluators")
    if not isinstance(evaluators, dict) or not all(
        isinstance(ev, PrequentialEvaluator) for ev in evaluators.values()
    ):
        raise ModelStateError(f"{path} contains no prequential evaluators")
    return evaluators
