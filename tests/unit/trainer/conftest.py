from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from models.multitask.synthetic import generate_examples
from schemas.training import TrainingExample
from services.trainer.settings import TrainerSettings


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def window_examples() -> list[TrainingExample]:
    return generate_examples(2500, user_count=50, item_count=120)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., TrainerSettings]:
    """Return a factory of small, fast trainer settings over a temporary registry."""

    def make(**overrides: Any) -> TrainerSettings:
        values: dict[str, Any] = {
            "registry_dir": tmp_path / "registry",
            "min_examples": 100,
            "holdout_fraction": 0.2,
            "embedding_dim": 8,
            "expert_count": 2,
            "expert_width": 16,
            "tower_width": 8,
            "epochs": 6,
            "batch_size": 256,
            "learning_rate": 0.01,
            "metrics_port": 0,
        }
        values.update(overrides)
        return TrainerSettings(**values)

    return make
