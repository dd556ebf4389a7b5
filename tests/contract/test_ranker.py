"""Contract checks of the multi-task ranker, the same ones every model passes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from models.multitask.dataset import DatasetConfig, build_training_set
from models.multitask.model import ModelConfig
from models.multitask.ranker import CandidateInput, Ranker, RankRequest
from models.multitask.synthetic import generate_examples
from models.multitask.train import TrainConfig, fit_feature_spec, train_new_model
from models.registry import DataWindow, ModelRegistry
from schemas.events import EventType
from schemas.training import TrainingExample

BUCKETS = {"user_id": 256, "item_id": 512, "category_id": 32, "brand": 32}
CONFIG = ModelConfig(embedding_dim=4, expert_count=2, expert_width=8, tower_width=4)
TRAINING = TrainConfig(epochs=6, batch_size=256, learning_rate=0.01, seed=1)
CANDIDATES = [
    CandidateInput(f"i{n}", {"item_event_count_1h": float(n)}, f"c{n % 20}", "b1", 5.0)
    for n in range(40)
]
USER_FEATURES = {"user_event_count_1h": 2.0}


def _train(examples: list[TrainingExample], seed: int = 1) -> Ranker:
    torch.set_num_threads(1)
    dataset = build_training_set(examples, DatasetConfig(seed=seed))
    spec = fit_feature_spec(dataset, hash_buckets=BUCKETS)
    config = TrainConfig(**{**TRAINING.__dict__, "seed": seed})
    model, _ = train_new_model(spec, CONFIG, dataset, config)
    return Ranker(model, spec, f"ranker-test-{seed}")


@pytest.fixture(scope="module")
def examples() -> list[TrainingExample]:
    return generate_examples(1500, user_count=40, item_count=100)


@pytest.fixture(scope="module")
def ranker(examples: list[TrainingExample]) -> Ranker:
    return _train(examples)


def test_ranker_learns_from_clicks(
    ranker: Ranker, examples: list[TrainingExample]
) -> None:
    start = examples[-1].event_time
    repeated = [
        TrainingExample(
            event_id=f"extra{n}",
            event_type=EventType.CLICK,
            user_id="fan",
            item_id="i7",
            event_time=start + timedelta(seconds=n),
            category_id="c7",
            brand="b1",
            price=5.0,
            user_features=USER_FEATURES,
            item_features={"item_event_count_1h": 7.0},
        )
        for n in range(300)
    ]
    clicked = [c.item_id for c in CANDIDATES].index("i7")
    before = ranker.predict("fan", USER_FEATURES, CANDIDATES)

    after = _train(examples + repeated).predict("fan", USER_FEATURES, CANDIDATES)

    assert after[clicked, 0] > before[clicked, 0]
    assert (after[:, 0] > after[clicked, 0]).sum() < (
        before[:, 0] > before[clicked, 0]
    ).sum()


def test_ranker_ignores_unseen_and_missing_features(ranker: Ranker) -> None:
    odd = [
        CandidateInput("new-item", {"item_never_seen": 1e9}),
        CandidateInput("i1", {}, None, None, None),
    ]

    probs = ranker.predict("new-user", {"user_never_seen": -5.0}, odd)

    assert probs.shape == (2, 3)
    assert np.isfinite(probs).all()


def test_ranker_outputs_nested_probabilities(ranker: Ranker) -> None:
    probs = ranker.predict("u1", USER_FEATURES, CANDIDATES)

    assert probs.shape == (len(CANDIDATES), 3)
    assert ((probs >= 0) & (probs <= 1)).all()
    assert (probs[:, 1] <= probs[:, 0]).all()
    assert (probs[:, 2] <= probs[:, 1]).all()


def test_ranker_same_seed_gives_same_output(examples: list[TrainingExample]) -> None:
    first = _train(examples, seed=3).predict("u1", USER_FEATURES, CANDIDATES)

    second = _train(examples, seed=3).predict("u1", USER_FEATURES, CANDIDATES)

    assert np.array_equal(first, second)


def test_ranker_predict_many_matches_predict(ranker: Ranker) -> None:
    requests = [
        RankRequest("u1", USER_FEATURES, CANDIDATES[:10]),
        RankRequest("u2", {}, []),
        RankRequest("u3", {"user_event_count_1h": 9.0}, CANDIDATES[5:30]),
    ]

    batched = ranker.predict_many(requests)

    for request, result in zip(requests, batched, strict=True):
        single = ranker.predict(
            request.user_id, request.user_features, request.candidates
        )
        assert np.allclose(result, single, atol=1e-6)


def test_ranker_save_load_keeps_predictions_and_version(
    ranker: Ranker, examples: list[TrainingExample], tmp_path: Path
) -> None:
    dataset = build_training_set(examples, DatasetConfig(seed=1))
    spec = fit_feature_spec(dataset, hash_buckets=BUCKETS)
    model, _ = train_new_model(spec, CONFIG, dataset, TRAINING)
    registry = ModelRegistry(tmp_path)
    window = DataWindow(
        start=datetime(2026, 1, 1, tzinfo=UTC), end=None, examples=1, rows=1
    )
    metadata = registry.save("ranker", model, spec, window, {})
    before = Ranker(model, spec, metadata.model_version)

    after = Ranker.from_artifact(registry.load(metadata.model_version))

    assert after.model_version == metadata.model_version
    assert np.array_equal(
        before.predict("u1", USER_FEATURES, CANDIDATES),
        after.predict("u1", USER_FEATURES, CANDIDATES),
    )
