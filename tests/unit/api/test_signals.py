from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from models.online import (
    AffinityModel,
    ConversionModel,
    OnlineExample,
    PrequentialEvaluator,
)
from services.api.signals import CheckpointSignals
from services.learner.checkpoints import save_evaluators
from services.learner.signals import Requests

KEY = b"checkpoint-key"
REQUESTS: Requests = [("u1", {}, [("i1", {}), ("i2", {})])]
WRITTEN_AT = 1_800_000_000.0


def _save(path: Path, *, affinity_updates: int = 0, key: bytes = KEY) -> Path:
    """Write a learner checkpoint whose affinity model learned (u1, i1) N times."""
    evaluators = {
        task: PrequentialEvaluator(ConversionModel(task))
        for task in ("cart_add", "purchase")
    }
    affinity = AffinityModel(user_buckets=64, item_buckets=64, pair_buckets=256)
    for _ in range(affinity_updates):
        affinity.learn_one(OnlineExample("u1", "i1"), True)
    evaluators["affinity"] = PrequentialEvaluator(affinity)
    save_evaluators(path, evaluators, key)
    return path


def _set_mtime(path: Path, seconds: float) -> None:
    os.utime(path, (seconds, seconds))


def _signals(directory: Path, instance_name: str | None = None) -> CheckpointSignals:
    return CheckpointSignals(
        directory, KEY, instance_name=instance_name, clock=lambda: WRITTEN_AT + 30.0
    )


def test_checkpoint_signals_are_nan_without_checkpoint(tmp_path: Path) -> None:
    signals = _signals(tmp_path / "missing")

    is_loaded = signals.refresh()
    matrix = signals.signal_matrix(REQUESTS)

    assert not is_loaded
    assert matrix.shape == (2, 3)
    assert np.isnan(matrix).all()
    assert signals.checkpoint_path is None


def test_checkpoint_signals_warn_once_while_checkpoint_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    signals = _signals(tmp_path)

    with caplog.at_level(logging.WARNING, logger="services.api.signals"):
        signals.refresh()
        signals.refresh()

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "no learner checkpoint found" in warnings[0].getMessage()
    assert str(tmp_path) in warnings[0].getMessage()


def test_checkpoint_signals_name_missing_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "learner"
    signals = _signals(folder)

    with caplog.at_level(logging.WARNING, logger="services.api.signals"):
        is_loaded = signals.refresh()
        signals.refresh()
        folder.mkdir()
        signals.refresh()

    assert not is_loaded
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert "checkpoint folder does not exist yet" in warnings[0]
    assert "CARTWHEEL_API_SIGNALS__CHECKPOINT_DIR" in warnings[0]
    assert str(folder) in warnings[0]
    assert "does not exist" not in warnings[1]
    assert "no learner checkpoint found" in warnings[1]


def test_checkpoint_signals_load_checkpoint(tmp_path: Path) -> None:
    _save(tmp_path / "learner.ckpt")
    signals = _signals(tmp_path)

    is_loaded = signals.refresh()
    matrix = signals.signal_matrix(REQUESTS)

    assert is_loaded
    assert signals.checkpoint_path == tmp_path / "learner.ckpt"
    assert matrix.shape == (2, 3)
    assert not np.isnan(matrix).any()


def test_checkpoint_signals_pick_most_recently_written_file(tmp_path: Path) -> None:
    _set_mtime(_save(tmp_path / "hotpath-0.ckpt"), WRITTEN_AT)
    _set_mtime(_save(tmp_path / "hotpath-1.ckpt", affinity_updates=20), WRITTEN_AT + 5)
    _set_mtime(_save(tmp_path / "hotpath-2.ckpt"), WRITTEN_AT - 5)
    signals = _signals(tmp_path)

    signals.refresh()

    assert signals.checkpoint_path == tmp_path / "hotpath-1.ckpt"


def test_checkpoint_signals_read_only_named_instance(tmp_path: Path) -> None:
    _set_mtime(_save(tmp_path / "hotpath-0.ckpt"), WRITTEN_AT)
    _set_mtime(_save(tmp_path / "hotpath-1.ckpt"), WRITTEN_AT + 5)
    signals = _signals(tmp_path, instance_name="hotpath-0")

    signals.refresh()

    assert signals.checkpoint_path == tmp_path / "hotpath-0.ckpt"


def test_checkpoint_signals_ignore_temporary_and_lock_files(tmp_path: Path) -> None:
    _save(tmp_path / ".learner.ckpt.tmp")
    (tmp_path / "learner.ckpt.lock").write_bytes(b"")
    signals = _signals(tmp_path)

    is_loaded = signals.refresh()

    assert not is_loaded
    assert signals.checkpoint_path is None


def test_checkpoint_signals_reload_changed_file(tmp_path: Path) -> None:
    path = _save(tmp_path / "learner.ckpt")
    _set_mtime(path, WRITTEN_AT)
    signals = _signals(tmp_path)
    signals.refresh()
    before = signals.signal_matrix(REQUESTS)
    _set_mtime(_save(path, affinity_updates=20), WRITTEN_AT + 60)

    is_loaded = signals.refresh()
    after = signals.signal_matrix(REQUESTS)

    assert is_loaded
    assert after[0, 2] > before[0, 2]


def test_checkpoint_signals_skip_unchanged_file(tmp_path: Path) -> None:
    _save(tmp_path / "learner.ckpt")
    signals = _signals(tmp_path)
    signals.refresh()

    is_loaded = signals.refresh()

    assert not is_loaded
    assert signals.checkpoint_path == tmp_path / "learner.ckpt"


def test_checkpoint_signals_keep_models_on_corrupt_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _save(tmp_path / "learner.ckpt", affinity_updates=20)
    _set_mtime(path, WRITTEN_AT)
    signals = _signals(tmp_path)
    signals.refresh()
    before = signals.signal_matrix(REQUESTS)
    path.write_bytes(b"not a checkpoint")
    _set_mtime(path, WRITTEN_AT + 60)

    with caplog.at_level(logging.WARNING, logger="services.api.signals"):
        is_loaded = signals.refresh()

    assert not is_loaded
    np.testing.assert_array_equal(signals.signal_matrix(REQUESTS), before)
    assert "the models loaded before" in caplog.text
    assert str(path) in caplog.text


def test_checkpoint_signals_reject_checkpoint_with_other_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _save(tmp_path / "learner.ckpt", key=b"another-key")
    signals = _signals(tmp_path)

    with caplog.at_level(logging.WARNING, logger="services.api.signals"):
        is_loaded = signals.refresh()

    assert not is_loaded
    assert np.isnan(signals.signal_matrix(REQUESTS)).all()
    assert "learner checkpoint not loaded" in caplog.text
    assert "without online signals" in caplog.text
    assert "compare CARTWHEEL_API_SIGNALS__CHECKPOINT_KEY with the key" in caplog.text


def test_checkpoint_signals_leave_folder_unchanged(tmp_path: Path) -> None:
    path = _save(tmp_path / "learner.ckpt")
    _set_mtime(path, WRITTEN_AT)
    before = {entry.name: entry.stat().st_mtime_ns for entry in tmp_path.iterdir()}
    signals = _signals(tmp_path)

    signals.refresh()

    after = {entry.name: entry.stat().st_mtime_ns for entry in tmp_path.iterdir()}
    assert after == before


def test_checkpoint_signals_age_counts_from_file_mtime(tmp_path: Path) -> None:
    _set_mtime(_save(tmp_path / "learner.ckpt"), WRITTEN_AT)
    signals = _signals(tmp_path)
    age_before_load = signals.checkpoint_age_seconds()

    signals.refresh()

    assert np.isnan(age_before_load)
    assert signals.checkpoint_age_seconds() == pytest.approx(30.0)


def test_checkpoint_signals_keep_models_after_deletion(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _save(tmp_path / "learner.ckpt", affinity_updates=20)
    signals = _signals(tmp_path)
    signals.refresh()
    before = signals.signal_matrix(REQUESTS)
    path.unlink()

    with caplog.at_level(logging.WARNING, logger="services.api.signals"):
        is_loaded = signals.refresh()
        signals.refresh()

    assert not is_loaded
    np.testing.assert_array_equal(signals.signal_matrix(REQUESTS), before)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "no learner checkpoint found" in warnings[0]
    assert "keep the models loaded before from learner.ckpt" in warnings[0]
    assert "until one" not in warnings[0]


def test_checkpoint_signals_skip_newer_invalid_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _set_mtime(_save(tmp_path / "learner.ckpt", affinity_updates=20), WRITTEN_AT)
    garbage = tmp_path / "zz-copy.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    _set_mtime(garbage, WRITTEN_AT + 60)
    signals = _signals(tmp_path)

    with caplog.at_level(logging.INFO, logger="services.api.signals"):
        is_loaded = signals.refresh()
        is_loaded_again = signals.refresh()

    assert is_loaded
    assert not is_loaded_again
    assert signals.checkpoint_path == tmp_path / "learner.ckpt"
    assert not np.isnan(signals.signal_matrix(REQUESTS)).any()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "learner checkpoint not loaded" in warnings[0]
    assert str(garbage) in warnings[0]
    loaded = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(loaded) == 1
    assert "skipped=['zz-copy.ckpt']" in loaded[0]


def test_checkpoint_signals_load_replaced_invalid_file(tmp_path: Path) -> None:
    _set_mtime(_save(tmp_path / "learner.ckpt"), WRITTEN_AT)
    newer = tmp_path / "zz-copy.ckpt"
    newer.write_bytes(b"not a checkpoint")
    _set_mtime(newer, WRITTEN_AT + 60)
    signals = _signals(tmp_path)
    signals.refresh()
    _set_mtime(_save(newer), WRITTEN_AT + 120)

    is_loaded = signals.refresh()

    assert is_loaded
    assert signals.checkpoint_path == newer


def test_checkpoint_signals_keep_newer_models_over_older_file(
    tmp_path: Path,
) -> None:
    _set_mtime(_save(tmp_path / "hotpath-0.ckpt"), WRITTEN_AT)
    newest = _save(tmp_path / "hotpath-1.ckpt", affinity_updates=20)
    _set_mtime(newest, WRITTEN_AT + 60)
    signals = _signals(tmp_path)
    signals.refresh()
    newest.unlink()

    is_loaded = signals.refresh()

    assert not is_loaded
    assert signals.checkpoint_path == newest


def test_checkpoint_signals_reject_file_as_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "learner"
    folder.write_bytes(b"")
    signals = _signals(folder)

    with caplog.at_level(logging.WARNING, logger="services.api.signals"):
        is_loaded = signals.refresh()
        signals.refresh()

    assert not is_loaded
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "CARTWHEEL_API_SIGNALS__CHECKPOINT_DIR is not a directory" in warnings[0]
    assert str(folder) in warnings[0]
    assert "no learner checkpoint found" not in warnings[0]
