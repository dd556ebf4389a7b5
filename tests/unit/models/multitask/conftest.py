from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import torch

from models.multitask.dataset import TrainingSet, build_training_set
from models.multitask.features import FeatureSpec
from models.multitask.model import ModelConfig
from models.multitask.synthetic import generate_examples
from models.multitask.train import TrainConfig, fit_feature_spec, train_new_model
from schemas.events import EventType
from schemas.training import TrainingExample

START = datetime(2026, 3, 1, tzinfo=UTC)
TINY_BUCKETS = {"user_id": 512, "item_id": 1024, "category_id": 64, "brand": 64}
TINY_MODEL = ModelConfig(embedding_dim=4, expert_count=2, expert_width=8, tower_width=4)
TINY_TRAINING = TrainConfig(epochs=6, batch_size=256, learning_rate=0.01)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def make_example() -> Callable[..., TrainingExample]:
    """Return a factory of training examples; seconds sets the event time offset."""
    counter = itertools.count()

    def make(seconds: float = 0.0, **overrides: Any) -> TrainingExample:
        number = next(counter)
        values: dict[str, Any] = {
            "event_id": f"e{number}",
            "event_type": EventType.CLICK,
            "user_id": "u1",
            "item_id": "i1",
            "session_id": "s1",
            "event_time": START + timedelta(seconds=seconds),
            "category_id": "c1",
            "brand": "b1",
            "price": 10.0,
            "user_features": {"user_click_count_1h": float(number)},
            "item_features": {"item_click_count_1h": float(number)},
        }
        values.update(overrides)
        return TrainingExample(**values)

    return make


@pytest.fixture(scope="session")
def synthetic_set() -> TrainingSet:
    return build_training_set(generate_examples(3000, user_count=60, item_count=150))


@pytest.fixture(scope="session")
def synthetic_spec(synthetic_set: TrainingSet) -> FeatureSpec:
    return fit_feature_spec(synthetic_set, hash_buckets=TINY_BUCKETS)


@pytest.fixture(scope="session")
def trained_tiny(
    synthetic_set: TrainingSet, synthetic_spec: FeatureSpec
) -> tuple[Any, FeatureSpec]:
    train, _ = synthetic_set.split_by_time(0.2)
    model, _ = train_new_model(synthetic_spec, TINY_MODEL, train, TINY_TRAINING)
    return model, synthetic_spec


@pytest.fixture
def tiny_config() -> ModelConfig:
    return TINY_MODEL


@pytest.fixture
def tiny_buckets() -> dict[str, int]:
    return dict(TINY_BUCKETS)
