from __future__ import annotations

import numpy as np
import pytest
import torch

from models.multitask.dataset import TrainingSet
from models.multitask.evaluation import evaluate, mean_reciprocal_rank, roc_auc
from models.multitask.features import FeatureSpec
from models.multitask.heads import esmm_log_probs
from models.multitask.losses import binary_cross_entropy_from_log_probs
from models.multitask.model import (
    ModelConfig,
    MultiTaskRanker,
    SingleTaskRanker,
    build_model,
    weight_count,
)
from models.multitask.train import TrainConfig, model_inputs, train_new_model
from schemas.events import EventType


def test_esmm_chain_multiplies_conditional_probabilities() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0], [2.0, -1.0, 0.5]])

    probs = torch.exp(esmm_log_probs(logits))

    conditional = torch.sigmoid(logits)
    assert torch.allclose(probs[:, 0], conditional[:, 0])
    assert torch.allclose(probs[:, 1], conditional[:, 0] * conditional[:, 1])
    assert torch.allclose(probs[:, 2], conditional.prod(dim=1))


def test_loss_matches_torch_binary_cross_entropy() -> None:
    probs = torch.tensor([[0.9, 0.2], [0.3, 0.05]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])

    loss = binary_cross_entropy_from_log_probs(torch.log(probs), labels)

    expected = torch.nn.functional.binary_cross_entropy(probs, labels) * 2
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_multitask_forward_returns_nested_probabilities(
    synthetic_set: TrainingSet, synthetic_spec: FeatureSpec, tiny_config: ModelConfig
) -> None:
    model = MultiTaskRanker(synthetic_spec, tiny_config)
    ids, numeric = model_inputs(synthetic_spec, synthetic_set)

    log_probs = model(ids[:32], numeric[:32])

    assert log_probs.shape == (32, 3)
    assert bool((log_probs[:, 1] <= log_probs[:, 0]).all())
    assert bool((log_probs[:, 2] <= log_probs[:, 1]).all())


def test_single_task_forward_returns_one_column(
    synthetic_set: TrainingSet, synthetic_spec: FeatureSpec
) -> None:
    config = ModelConfig(architecture="single_task", task=EventType.PURCHASE)
    model = build_model(synthetic_spec, config)
    ids, numeric = model_inputs(synthetic_spec, synthetic_set)

    log_probs = model(ids[:8], numeric[:8])

    assert isinstance(model, SingleTaskRanker)
    assert model.tasks == (EventType.PURCHASE,)
    assert log_probs.shape == (8, 1)


@pytest.mark.parametrize("architecture", ["mmoe", "single_task"])
def test_weight_count_matches_built_model(
    synthetic_spec: FeatureSpec, tiny_config: ModelConfig, architecture: str
) -> None:
    config = ModelConfig.from_dict(
        {**tiny_config.to_dict(), "architecture": architecture}
    )

    count = weight_count(synthetic_spec, config)

    built = build_model(synthetic_spec, config).state_dict().values()
    assert count == sum(tensor.numel() for tensor in built)


def test_weight_count_stays_exact_beyond_int64(
    synthetic_spec: FeatureSpec,
) -> None:
    config = ModelConfig(embedding_dim=10**30)

    count = weight_count(synthetic_spec, config)

    assert count > 10**30 * sum(synthetic_spec.hash_buckets.values())


def test_model_config_rejects_fractional_size() -> None:
    with pytest.raises(ValueError, match=r"embedding_dim=2\.5; expected an integer"):
        ModelConfig(embedding_dim=2.5)  # type: ignore[arg-type]


def test_model_maps_missing_id_to_reserved_bucket(
    synthetic_spec: FeatureSpec, tiny_config: ModelConfig
) -> None:
    model = MultiTaskRanker(synthetic_spec, tiny_config)
    ids = torch.full((1, 4), -1, dtype=torch.int64)
    numeric = torch.zeros((1, len(synthetic_spec.numeric_names)))

    log_probs = model(ids, numeric)

    assert torch.isfinite(log_probs).all()


def test_training_beats_chance_on_every_task(
    trained_tiny: tuple[MultiTaskRanker, FeatureSpec], synthetic_set: TrainingSet
) -> None:
    model, spec = trained_tiny
    _, holdout = synthetic_set.split_by_time(0.2)

    metrics = evaluate(model, spec, holdout)

    assert metrics["auc_click"] > 0.55
    assert metrics["auc_cart_add"] > 0.55
    assert metrics["auc_purchase"] > 0.55
    assert metrics["mrr"] > 0.5


def test_training_is_deterministic_for_a_seed(
    synthetic_set: TrainingSet, synthetic_spec: FeatureSpec, tiny_config: ModelConfig
) -> None:
    small = synthetic_set.subset(synthetic_set.groups < 300)
    config = TrainConfig(epochs=1, batch_size=256, seed=5)

    first, _ = train_new_model(synthetic_spec, tiny_config, small, config)
    second, _ = train_new_model(synthetic_spec, tiny_config, small, config)

    for (name, left), right in zip(
        first.state_dict().items(), second.state_dict().values(), strict=True
    ):
        assert torch.equal(left, right), name


def test_roc_auc_counts_ties_as_half() -> None:
    labels = np.array([0, 0, 1, 1])

    assert roc_auc(labels, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert roc_auc(labels, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)


def test_roc_auc_is_nan_with_one_class() -> None:
    assert np.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_mean_reciprocal_rank_ranks_positive_within_its_event() -> None:
    groups = np.array([0, 0, 0, 1, 1])
    is_positive = np.array([True, False, False, False, True])
    scores = np.array([0.5, 0.9, 0.1, 0.2, 0.7])

    mrr = mean_reciprocal_rank(groups, is_positive, scores)

    assert mrr == pytest.approx((1 / 2 + 1 / 1) / 2)
