from __future__ import annotations

import logging
from pathlib import Path

import pytest

from models.errors import ModelStateError
from models.online import AffinityModel, PrequentialEvaluator, write_checkpoint
from models.online.affinity import PAIR_HASHING
from services.learner.checkpoints import restore_evaluators, save_evaluators


def test_restore_evaluators_returns_saved_models(tmp_path: Path) -> None:
    path = tmp_path / "learner.ckpt"
    evaluator = PrequentialEvaluator(AffinityModel(user_buckets=8, item_buckets=8))
    save_evaluators(path, {"affinity": evaluator}, b"key")

    restored = restore_evaluators(path, b"key", expected_names=["affinity"])

    assert restored is not None
    assert restored["affinity"].model.model_version == evaluator.model.model_version


def test_restore_evaluators_returns_none_without_file(tmp_path: Path) -> None:
    assert restore_evaluators(tmp_path / "missing.ckpt", b"key") is None


def test_restore_evaluators_rejects_other_model_names(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "learner.ckpt"
    evaluator = PrequentialEvaluator(AffinityModel(user_buckets=8, item_buckets=8))
    save_evaluators(path, {"affinity": evaluator}, b"key")

    with caplog.at_level(logging.WARNING, logger="services.learner.checkpoints"):
        restored = restore_evaluators(path, b"key", expected_names=["cart_add"])

    assert restored is None
    assert "expected ['cart_add']" in caplog.text


def test_restore_evaluators_strict_raises_on_foreign_state(tmp_path: Path) -> None:
    path = tmp_path / "learner.ckpt"
    write_checkpoint(path, {"format": "something-else"}, b"key")

    with pytest.raises(ModelStateError, match="cartwheel-learner-v1"):
        restore_evaluators(path, b"key", strict=True)


def test_restore_keeps_version_1_affinity_model(
    tmp_path: Path,
) -> None:
    path = tmp_path / "learner.ckpt"
    model = AffinityModel(user_buckets=8, item_buckets=8)
    # Checkpoints written before pair hashing was versioned lack the attribute.
    del model.pair_hashing
    save_evaluators(path, {"affinity": PrequentialEvaluator(model)}, b"key")

    restored = restore_evaluators(path, b"key", expected_names=["affinity"])

    assert restored is not None
    assert restored["affinity"].model.pair_hashing == PAIR_HASHING


def test_restore_evaluators_rejects_an_unknown_pair_hashing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "learner.ckpt"
    model = AffinityModel(user_buckets=8, item_buckets=8)
    model.pair_hashing = PAIR_HASHING + 1
    save_evaluators(path, {"affinity": PrequentialEvaluator(model)}, b"key")

    with caplog.at_level(logging.WARNING, logger="services.learner.checkpoints"):
        restored = restore_evaluators(path, b"key", expected_names=["affinity"])

    assert restored is None
    assert "checkpoint rejected, starting fresh" in caplog.text
