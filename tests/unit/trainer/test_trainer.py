from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.registry import ArtifactMetadata, ModelRegistry
from schemas.training import TrainingExample
from services.common.errors import InfrastructureError
from services.trainer import trainer as trainer_module
from services.trainer.settings import TrainerSettings
from services.trainer.trainer import Trainer, TrainingStoppedError

MakeSettings = Callable[..., TrainerSettings]


def test_refresh_promotes_first_model_and_announces_it(
    make_settings: MakeSettings, window_examples: list[TrainingExample]
) -> None:
    settings = make_settings()
    registry = ModelRegistry(settings.registry_dir)
    announced: list[tuple[str, str]] = []

    def announce(metadata: ArtifactMetadata, uri: str) -> None:
        announced.append((metadata.model_version, uri))

    result = Trainer(settings, registry, announce).refresh(window_examples, "test")

    assert result.outcome == "promoted"
    assert registry.champion_version("ranker") == result.model_version
    assert announced == [
        (
            result.model_version,
            str(registry.path_of(str(result.model_version)).resolve()),
        )
    ]


def test_refresh_skips_window_below_min_examples(
    make_settings: MakeSettings, window_examples: list[TrainingExample]
) -> None:
    settings = make_settings(min_examples=5000)

    result = Trainer(settings, ModelRegistry(settings.registry_dir)).refresh(
        window_examples, "test"
    )

    assert result.outcome == "skipped"
    assert ModelRegistry(settings.registry_dir).versions("ranker") == []


def test_refresh_skips_examples_the_champion_saw(
    make_settings: MakeSettings, window_examples: list[TrainingExample]
) -> None:
    settings = make_settings()
    registry = ModelRegistry(settings.registry_dir)
    trainer = Trainer(settings, registry)
    first = trainer.refresh(window_examples, "first")

    second = trainer.refresh(window_examples, "second")
    # Same count, first and last time: one example in the middle was replaced.
    middle = len(window_examples) // 2
    replaced = list(window_examples)
    replaced[middle] = replaced[middle].model_copy(update={"event_id": "late-1"})
    third = trainer.refresh(replaced, "third")

    assert first.outcome == "promoted"
    assert second.outcome == "skipped"
    assert "trained on these" in second.reason
    assert third.outcome != "skipped"
    assert registry.versions("ranker")[0] == first.model_version


def test_challenger_on_shuffled_labels_is_not_promoted(
    make_settings: MakeSettings, window_examples: list[TrainingExample]
) -> None:
    settings = make_settings()
    registry = ModelRegistry(settings.registry_dir)
    trainer = Trainer(settings, registry)
    champion = trainer.refresh(window_examples, "first")
    prepared = trainer.prepare(window_examples)
    assert prepared is not None
    permutation = np.random.default_rng(0).permutation(len(prepared.train))
    shuffled = prepared.train.with_labels(prepared.train.labels[permutation])

    result = trainer.judge(trainer.train_challenger(shuffled), prepared)

    assert champion.outcome == "promoted"
    assert result.outcome == "rejected"
    assert "auc_click worse" in result.reason
    assert registry.champion_version("ranker") == champion.model_version
    assert registry.versions("ranker") == [champion.model_version]


def test_refresh_judges_alone_when_champion_is_corrupt(
    make_settings: MakeSettings, window_examples: list[TrainingExample]
) -> None:
    settings = make_settings()
    registry = ModelRegistry(settings.registry_dir)
    trainer = Trainer(settings, registry)
    first = trainer.refresh(window_examples, "first")
    weights = registry.path_of(str(first.model_version)) / "weights.safetensors"
    weights.write_bytes(b"garbage")

    second = trainer.refresh(window_examples, "second")

    assert second.outcome == "promoted"
    assert second.champion_metrics is None
    assert registry.champion_version("ranker") == second.model_version


def test_refresh_replaces_champion_of_absurd_size(
    make_settings: MakeSettings,
    window_examples: list[TrainingExample],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings()
    registry = ModelRegistry(settings.registry_dir)
    trainer = Trainer(settings, registry)
    first = trainer.refresh(window_examples, "first")
    metadata = registry.path_of(str(first.model_version)) / "metadata.json"
    document = json.loads(metadata.read_text())
    document["architecture"]["embedding_dim"] = 1_000_000_000
    metadata.write_text(json.dumps(document))

    with caplog.at_level(logging.WARNING, logger=trainer_module.__name__):
        second = trainer.refresh(window_examples[1:], "second")

    [failure] = [r for r in caplog.records if "failed to load" in r.getMessage()]
    assert "fewer than the" in failure.getMessage()
    assert failure.exc_info is None
    assert second.outcome == "promoted"
    assert registry.champion_version("ranker") == second.model_version


def _corrupt_champion(
    make_settings: MakeSettings, examples: list[TrainingExample]
) -> tuple[ModelRegistry, str, Path]:
    """Promote a first champion and overwrite its weights with zeros.

    Returns:
        The registry, the champion's version and its weights file.
    """
    registry = ModelRegistry(make_settings().registry_dir)
    first = Trainer(make_settings(), registry).refresh(examples, "first")
    version = str(first.model_version)
    weights = registry.path_of(version) / "weights.safetensors"
    weights.write_bytes(bytes(weights.stat().st_size))
    return registry, version, weights


def test_refresh_logs_unloadable_champion_once_without_traceback(
    make_settings: MakeSettings,
    window_examples: list[TrainingExample],
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry, corrupt, _ = _corrupt_champion(make_settings, window_examples)
    # No challenger reaches a click AUC of 1, so the corrupt champion stays.
    trainer = Trainer(make_settings(min_click_auc=1.0), registry)

    with caplog.at_level(logging.INFO, logger=trainer_module.__name__):
        second = trainer.refresh(window_examples, "second")
        third = trainer.refresh(window_examples[1:], "third")

    failures = [r for r in caplog.records if "failed to load" in r.getMessage()]
    assert second.outcome == third.outcome == "rejected"
    assert len(failures) == 1
    assert failures[0].levelno == logging.WARNING
    assert failures[0].exc_info is None
    assert "weights have SHA-256" in failures[0].getMessage()
    assert corrupt in failures[0].getMessage()
    assert failures[0].getMessage().count("restore") == 1
    assert "champion kept" not in caplog.text
    assert caplog.text.count("the champion still fails to load") == 2


def test_rejected_window_skipped_beside_corrupt_champion(
    make_settings: MakeSettings,
    window_examples: list[TrainingExample],
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry, corrupt, _ = _corrupt_champion(make_settings, window_examples)
    trainer = Trainer(make_settings(min_click_auc=1.0), registry)
    # Another test may have left the root logger at INFO, and then the
    # set-up's own refresh is captured too.
    caplog.clear()

    with caplog.at_level(logging.INFO, logger=trainer_module.__name__):
        results = [trainer.refresh(window_examples, "schedule") for _ in range(3)]

    assert [r.outcome for r in results] == ["rejected", "skipped", "skipped"]
    assert "was rejected against the same champion" in results[1].reason
    assert caplog.text.count("challenger trained rows=") == 1
    assert caplog.text.count("champion failed to load") == 1
    assert registry.versions("ranker") == [corrupt]


def test_rejected_window_skipped_until_new_example(
    make_settings: MakeSettings, window_examples: list[TrainingExample]
) -> None:
    registry = ModelRegistry(make_settings().registry_dir)
    first = Trainer(make_settings(), registry).refresh(window_examples, "first")
    trainer = Trainer(make_settings(min_click_auc=1.0), registry)
    newer = window_examples[1:]

    second = trainer.refresh(newer, "second")
    third = trainer.refresh(newer, "third")
    fourth = trainer.refresh(newer[1:], "fourth")

    assert second.outcome == "rejected"
    assert third.outcome == "skipped"
    assert fourth.outcome == "rejected"
    assert registry.champion_version("ranker") == first.model_version


def test_rejected_window_retrained_once_champion_loads(
    make_settings: MakeSettings, window_examples: list[TrainingExample]
) -> None:
    registry = ModelRegistry(make_settings().registry_dir)
    first = Trainer(make_settings(), registry).refresh(window_examples, "first")
    weights = registry.path_of(str(first.model_version)) / "weights.safetensors"
    content = weights.read_bytes()
    weights.write_bytes(b"garbage")
    trainer = Trainer(make_settings(min_click_auc=1.0), registry)
    rejected_alone = trainer.refresh(window_examples[1:], "second")

    weights.write_bytes(content)
    compared = trainer.refresh(window_examples[1:], "third")

    assert rejected_alone.outcome == "rejected"
    assert rejected_alone.champion_metrics is None
    assert compared.outcome == "rejected"
    assert compared.champion_metrics is not None


def test_refresh_replaces_corrupt_champion_once(
    make_settings: MakeSettings, window_examples: list[TrainingExample]
) -> None:
    registry, _, _ = _corrupt_champion(make_settings, window_examples)
    trainer = Trainer(make_settings(), registry)

    results = [trainer.refresh(window_examples, "schedule") for _ in range(3)]

    assert [r.outcome for r in results] == ["promoted", "skipped", "skipped"]
    assert "the champion was trained on these" in results[1].reason
    assert registry.champion_version("ranker") == results[0].model_version


def test_stopped_trainer_promotes_nothing(
    make_settings: MakeSettings, window_examples: list[TrainingExample]
) -> None:
    settings = make_settings()
    registry = ModelRegistry(settings.registry_dir)
    trainer = Trainer(settings, registry)

    trainer.stop()

    with pytest.raises(TrainingStoppedError, match="shutting down"):
        trainer.refresh(window_examples, "test")
    assert registry.versions("ranker") == []


def test_stop_during_training_ends_within_batch(
    make_settings: MakeSettings,
    window_examples: list[TrainingExample],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings()
    registry = ModelRegistry(settings.registry_dir)
    trainer = Trainer(settings, registry)
    batches_after_stop: list[int] = []

    def train_one_batch_then_stop(*args: object, **kwargs: Any) -> object:
        # Stand-in for the training loop: the trainer is stopped during the
        # first batch, before any progress report.
        trainer.stop()
        kwargs["on_batch"]()
        batches_after_stop.append(1)
        raise AssertionError("on_batch did not stop training")

    monkeypatch.setattr(trainer_module, "train_new_model", train_one_batch_then_stop)

    with pytest.raises(TrainingStoppedError, match="shutting down"):
        trainer.refresh(window_examples, "test")
    assert batches_after_stop == []
    assert registry.versions("ranker") == []


def test_announce_champion_announces_the_registry_champion(
    make_settings: MakeSettings, window_examples: list[TrainingExample]
) -> None:
    settings = make_settings()
    registry = ModelRegistry(settings.registry_dir)
    champion = Trainer(settings, registry).refresh(window_examples, "first")
    announced: list[tuple[str, str]] = []

    def announce(metadata: ArtifactMetadata, uri: str) -> None:
        announced.append((metadata.model_version, uri))

    version = Trainer(settings, registry, announce).announce_champion()

    assert version == champion.model_version
    assert announced == [(str(version), str(registry.path_of(str(version)).resolve()))]


def test_announce_champion_without_champion_announces_nothing(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings()
    announced: list[ArtifactMetadata] = []

    version = Trainer(
        settings,
        ModelRegistry(settings.registry_dir),
        lambda metadata, uri: announced.append(metadata),
    ).announce_champion()

    assert version is None
    assert announced == []


def test_announce_champion_skips_champion_whose_weights_fail_checksum(
    make_settings: MakeSettings,
    window_examples: list[TrainingExample],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings()
    registry = ModelRegistry(settings.registry_dir)
    champion = Trainer(settings, registry).refresh(window_examples, "first")
    weights = registry.path_of(str(champion.model_version)) / "weights.safetensors"
    with weights.open("ab") as file:
        file.write(b"\0" * 1000)
    announced: list[ArtifactMetadata] = []
    # The first refresh's INFO lines are captured when another test left the
    # root logger at INFO.
    caplog.clear()

    with caplog.at_level(logging.WARNING, logger=trainer_module.__name__):
        version = Trainer(
            settings, registry, lambda metadata, uri: announced.append(metadata)
        ).announce_champion()

    assert version is None
    assert announced == []
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.exc_info is None
    assert str(champion.model_version) in record.getMessage()
    assert str(weights) in record.getMessage()
    assert "restore it" in record.getMessage()
    assert "CARTWHEEL_TRAINER_MIN_CLICK_AUC replaces it" in record.getMessage()


def test_refresh_replaces_champion_whose_file_is_not_utf8(
    make_settings: MakeSettings,
    window_examples: list[TrainingExample],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings()
    registry = ModelRegistry(settings.registry_dir)
    Trainer(settings, registry).refresh(window_examples, "first")
    registry.champion_path("ranker").write_bytes(b"\xff\xfe\x00")
    announced: list[ArtifactMetadata] = []
    trainer = Trainer(
        settings, registry, lambda metadata, uri: announced.append(metadata)
    )

    with caplog.at_level(logging.WARNING, logger=trainer_module.__name__):
        version_at_start = trainer.announce_champion()
        result = trainer.refresh(window_examples[1:], "second")

    [failure] = [r for r in caplog.records if "failed to load" in r.getMessage()]
    assert version_at_start is None
    assert "is not UTF-8 text" in failure.getMessage()
    assert failure.exc_info is None
    assert result.outcome == "promoted"
    assert result.champion_metrics is None
    assert registry.champion_version("ranker") == result.model_version
    assert [m.model_version for m in announced] == [result.model_version]


class _FlakyBroker:
    """Announces like the broker, except that the first ``failures`` calls fail."""

    def __init__(self, failures: int) -> None:
        self.announced: list[str] = []
        self._failures = failures

    def announce(self, metadata: ArtifactMetadata, uri: str) -> None:
        if self._failures > 0:
            self._failures -= 1
            raise InfrastructureError("announcing failed: delivery timed out")
        self.announced.append(metadata.model_version)


def _promote_unannounced(
    make_settings: MakeSettings, examples: list[TrainingExample], failures: int
) -> tuple[ModelRegistry, Trainer, _FlakyBroker]:
    """Promote a first champion whose announcement fails."""
    settings = make_settings()
    registry = ModelRegistry(settings.registry_dir)
    broker = _FlakyBroker(failures)
    trainer = Trainer(settings, registry, broker.announce)
    with pytest.raises(InfrastructureError, match="delivery timed out"):
        trainer.refresh(examples, "first")
    return registry, trainer, broker


def test_refresh_announces_champion_whose_announcement_failed(
    make_settings: MakeSettings, window_examples: list[TrainingExample]
) -> None:
    registry, trainer, broker = _promote_unannounced(
        make_settings, window_examples, failures=2
    )
    promoted = registry.champion_version("ranker")

    with pytest.raises(InfrastructureError):
        trainer.refresh(window_examples, "broker still down")
    again = trainer.refresh(window_examples, "broker back")
    later = trainer.refresh(window_examples, "schedule")

    assert promoted is not None
    assert again.outcome == later.outcome == "skipped"
    assert broker.announced == [promoted]


def test_refresh_announces_champion_not_announced_at_start(
    make_settings: MakeSettings, window_examples: list[TrainingExample]
) -> None:
    settings = make_settings()
    registry = ModelRegistry(settings.registry_dir)
    Trainer(settings, registry).refresh(window_examples, "earlier run")
    champion = registry.champion_version("ranker")
    broker = _FlakyBroker(failures=1)
    trainer = Trainer(settings, registry, broker.announce)
    with pytest.raises(InfrastructureError):
        trainer.announce_champion()

    result = trainer.refresh(window_examples, "schedule")

    assert result.outcome == "skipped"
    assert broker.announced == [champion]


def test_refresh_drops_failed_announcement_of_replaced_champion(
    make_settings: MakeSettings, window_examples: list[TrainingExample]
) -> None:
    registry, trainer, broker = _promote_unannounced(
        make_settings, window_examples, failures=1
    )
    # Another trainer promotes and announces a version of its own meanwhile.
    other = Trainer(make_settings(), registry).refresh(window_examples[1:], "other")

    result = trainer.refresh(window_examples[1:], "schedule")

    assert other.outcome == "promoted"
    assert result.outcome == "skipped"
    assert broker.announced == []
