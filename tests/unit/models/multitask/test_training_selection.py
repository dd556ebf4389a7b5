"""Input dropout, the ESMM gradient option and validation-based epoch selection."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from models.multitask import train as train_module
from models.multitask.dataset import TrainingSet
from models.multitask.features import FeatureSpec
from models.multitask.heads import esmm_log_probs
from models.multitask.losses import binary_cross_entropy_from_log_probs
from models.multitask.model import ModelConfig, MultiTaskRanker, build_model
from models.multitask.train import (
    TrainConfig,
    model_inputs,
    train_model,
    train_new_model,
)
from schemas.events import EventType


def _small(synthetic_set: TrainingSet) -> TrainingSet:
    return synthetic_set.subset(synthetic_set.groups < 600)


def _assert_same_weights(left: torch.nn.Module, right: torch.nn.Module) -> None:
    right_state = right.state_dict()
    for name, tensor in left.state_dict().items():
        assert torch.equal(tensor, right_state[name]), name


def test_detached_chain_keeps_values_and_stops_upstream_gradient() -> None:
    logits = torch.tensor([[0.3, -1.2, 0.8], [2.0, 0.5, -0.4]], requires_grad=True)

    detached = esmm_log_probs(logits, detach_upstream=True)
    full = esmm_log_probs(logits)
    detached[:, 2].sum().backward()  # type: ignore[no-untyped-call]

    assert torch.allclose(detached, full)
    assert logits.grad is not None
    assert torch.equal(logits.grad[:, :2], torch.zeros(2, 2))
    assert bool((logits.grad[:, 2] != 0).all())


def test_full_chain_passes_purchase_gradient_to_click_logit() -> None:
    logits = torch.tensor([[0.3, -1.2, 0.8]], requires_grad=True)

    esmm_log_probs(logits)[:, 2].sum().backward()  # type: ignore[no-untyped-call]

    assert logits.grad is not None
    assert bool((logits.grad != 0).all())


@pytest.mark.parametrize(
    ("chain_gradient", "click_tower_moves"), [("own_tower", False), ("full", True)]
)
def test_chain_gradient_reaches_click_tower(
    synthetic_set: TrainingSet,
    synthetic_spec: FeatureSpec,
    tiny_config: ModelConfig,
    chain_gradient: str,
    click_tower_moves: bool,
) -> None:
    config = replace(tiny_config, chain_gradient=chain_gradient, input_dropout=0.0)
    torch.manual_seed(0)
    model = MultiTaskRanker(synthetic_spec, config)
    ids, numeric = model_inputs(synthetic_spec, synthetic_set)
    labels = torch.from_numpy(synthetic_set.labels[:256].copy())
    purchase_only = torch.tensor([0.0, 0.0, 1.0])

    loss = binary_cross_entropy_from_log_probs(
        model(ids[:256], numeric[:256]), labels, purchase_only
    )
    loss.backward()  # type: ignore[no-untyped-call]

    click_grads = [p.grad for p in model.towers[0].parameters()]
    purchase_grads = [p.grad for p in model.towers[2].parameters()]
    assert all(g is not None and bool(g.abs().sum() > 0) for g in purchase_grads)
    assert model.experts.weight.grad is not None
    assert bool(model.experts.weight.grad.abs().sum() > 0)
    click_moved = any(g is not None and bool(g.abs().sum() > 0) for g in click_grads)
    assert click_moved is click_tower_moves


def test_input_dropout_acts_in_training_only(
    synthetic_set: TrainingSet, synthetic_spec: FeatureSpec, tiny_config: ModelConfig
) -> None:
    model = MultiTaskRanker(synthetic_spec, replace(tiny_config, input_dropout=0.5))
    ids, numeric = model_inputs(synthetic_spec, synthetic_set)

    model.train()
    first_train = model(ids[:64], numeric[:64])
    second_train = model(ids[:64], numeric[:64])
    model.eval()
    first_eval = model(ids[:64], numeric[:64])
    second_eval = model(ids[:64], numeric[:64])

    assert not torch.equal(first_train, second_train)
    assert torch.equal(first_eval, second_eval)


def test_model_config_reads_metadata_without_the_new_fields() -> None:
    old = {
        "architecture": "mmoe",
        "task": "click",
        "embedding_dim": 8,
        "expert_count": 2,
        "expert_width": 8,
        "tower_width": 4,
    }

    config = ModelConfig.from_dict(old)

    assert config == ModelConfig(
        embedding_dim=8, expert_count=2, expert_width=8, tower_width=4
    )
    assert ModelConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "values",
    [{"input_dropout": 1.0}, {"input_dropout": -0.1}, {"chain_gradient": "some"}],
)
def test_model_config_rejects_bad_values(values: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(values))):
        ModelConfig(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "values", [{"validation_fraction": 1.0}, {"validation_fraction": -0.5}]
)
def test_train_config_rejects_bad_validation_fraction(values: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="validation_fraction"):
        TrainConfig(**values)  # type: ignore[arg-type]


def test_train_config_rejects_zero_patience() -> None:
    with pytest.raises(ValueError, match="patience"):
        TrainConfig(patience=0)


@pytest.fixture
def tied_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Score every epoch's validation AUC as exactly 0.5.

    Identical validation rows do not give exact ties on every CPU, because a
    batched float32 forward pass may sum in a different order for different
    rows. On one 2-core Xeon that moved an epoch's AUC to 0.5006.
    """
    monkeypatch.setattr(train_module._EarlyStopping, "score", lambda self: 0.5)


@pytest.mark.usefixtures("tied_validation")
def test_early_stopping_keeps_best_epoch(
    synthetic_set: TrainingSet, synthetic_spec: FeatureSpec, tiny_config: ModelConfig
) -> None:
    dataset = _small(synthetic_set)
    stopping = TrainConfig(
        epochs=6, batch_size=256, validation_fraction=0.25, patience=2, seed=3
    )
    fit_rows, _ = dataset.split_by_time(0.25)
    torch.manual_seed(1)
    stopped = build_model(synthetic_spec, tiny_config)
    report = train_model(stopped, synthetic_spec, dataset, stopping)
    torch.manual_seed(1)
    one_epoch = build_model(synthetic_spec, tiny_config)
    train_model(
        one_epoch,
        synthetic_spec,
        fit_rows,
        TrainConfig(epochs=1, batch_size=256, seed=3),
    )

    # Ties everywhere: only the first epoch counts as an improvement.
    assert (report.epochs, report.best_epoch) == (3, 1)
    assert report.validation_score == pytest.approx(0.5)
    assert report.rows == len(fit_rows)
    _assert_same_weights(stopped, one_epoch)


@pytest.mark.usefixtures("tied_validation")
def test_refit_uses_every_row(
    synthetic_set: TrainingSet, synthetic_spec: FeatureSpec, tiny_config: ModelConfig
) -> None:
    dataset = _small(synthetic_set)
    config = TrainConfig(
        epochs=6, batch_size=256, validation_fraction=0.25, patience=1, seed=3
    )

    refitted, report = train_new_model(synthetic_spec, tiny_config, dataset, config)
    same, _ = train_new_model(
        synthetic_spec,
        tiny_config,
        dataset,
        TrainConfig(epochs=1, batch_size=256, seed=3),
    )

    assert (report.epochs, report.best_epoch, report.rows) == (1, 1, len(dataset))
    _assert_same_weights(refitted, same)


def test_validation_without_both_classes_runs_every_epoch(
    synthetic_set: TrainingSet, synthetic_spec: FeatureSpec, tiny_config: ModelConfig
) -> None:
    dataset = _small(synthetic_set)
    _, validation = dataset.split_by_time(0.25)
    labels = dataset.labels.copy()
    labels[np.isin(dataset.groups, np.unique(validation.groups))] = 0.0
    config = TrainConfig(
        epochs=3, batch_size=256, validation_fraction=0.25, patience=1, refit=False
    )

    _, report = train_new_model(
        synthetic_spec, tiny_config, dataset.with_labels(labels), config
    )

    assert (report.epochs, report.best_epoch) == (3, 3)
    assert np.isnan(report.validation_score)


def test_early_stopping_stays_within_budget(
    synthetic_set: TrainingSet, synthetic_spec: FeatureSpec, tiny_config: ModelConfig
) -> None:
    config = TrainConfig(
        epochs=4, batch_size=256, validation_fraction=0.2, patience=2, refit=False
    )

    _, report = train_new_model(
        synthetic_spec, tiny_config, _small(synthetic_set), config
    )

    assert 1 <= report.best_epoch <= report.epochs <= 4
    assert 0.5 < report.validation_score <= 1.0


def test_selection_task_scores_only_that_task(
    synthetic_set: TrainingSet, synthetic_spec: FeatureSpec, tiny_config: ModelConfig
) -> None:
    dataset = _small(synthetic_set)
    _, validation = dataset.split_by_time(0.25)
    labels = dataset.labels.copy()
    # Without click positives in the validation slice, click cannot pick.
    labels[np.isin(dataset.groups, np.unique(validation.groups)), 0] = 0.0
    config = TrainConfig(
        epochs=3,
        batch_size=256,
        validation_fraction=0.25,
        patience=1,
        refit=False,
        selection_task=EventType.CLICK,
    )

    _, by_click = train_new_model(
        synthetic_spec, tiny_config, dataset.with_labels(labels), config
    )
    _, by_mean = train_new_model(
        synthetic_spec,
        tiny_config,
        dataset.with_labels(labels),
        replace(config, selection_task=None),
    )

    assert (by_click.epochs, by_click.best_epoch) == (3, 3)
    assert np.isnan(by_click.validation_score)
    assert not np.isnan(by_mean.validation_score)


class _StopAfter(Exception):
    pass


def test_on_batch_runs_after_every_batch(
    synthetic_set: TrainingSet, synthetic_spec: FeatureSpec, tiny_config: ModelConfig
) -> None:
    dataset = _small(synthetic_set)
    config = TrainConfig(epochs=2, batch_size=256, seed=3)
    batches_per_epoch = (len(dataset) + 255) // 256
    calls: list[int] = []

    train_model(
        build_model(synthetic_spec, tiny_config),
        synthetic_spec,
        dataset,
        config,
        on_batch=lambda: calls.append(1),
    )

    assert len(calls) == 2 * batches_per_epoch


def test_on_batch_error_stops_before_progress(
    synthetic_set: TrainingSet, synthetic_spec: FeatureSpec, tiny_config: ModelConfig
) -> None:
    dataset = _small(synthetic_set)
    config = TrainConfig(epochs=1, batch_size=8, seed=3, progress_every_batches=50)
    calls: list[int] = []
    reports: list[int] = []

    def stop_at_third() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise _StopAfter

    with pytest.raises(_StopAfter):
        train_new_model(
            synthetic_spec,
            tiny_config,
            dataset,
            config,
            on_progress=lambda progress: reports.append(progress.batch),
            on_batch=stop_at_third,
        )

    assert len(calls) == 3
    assert reports == []
