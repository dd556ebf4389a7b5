"""One contract suite run against every online model.

Every model learns from a click, handles features and ids it has never seen,
gives the same output for the same seed, and survives a checkpoint round trip
with identical predictions and the same ``model_version``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from models.online import (
    AffinityModel,
    ConversionModel,
    OnlineExample,
    OnlineModel,
    dump_checkpoint,
    load_checkpoint,
)
from schemas.events import Event, EventType

CREATED_AT = datetime(2026, 1, 5, tzinfo=UTC)

MODEL_FACTORIES: dict[str, Callable[[int], OnlineModel]] = {
    "conversion_logistic_regression": lambda seed: ConversionModel(
        "cart_add", learner="logistic_regression", seed=seed, created_at=CREATED_AT
    ),
    "conversion_alma": lambda seed: ConversionModel(
        "cart_add", learner="alma", seed=seed, created_at=CREATED_AT
    ),
    "conversion_fm": lambda seed: ConversionModel(
        "cart_add", learner="fm", seed=seed, created_at=CREATED_AT
    ),
    "affinity": lambda seed: AffinityModel(
        user_buckets=128, item_buckets=128, seed=seed, created_at=CREATED_AT
    ),
}


@pytest.fixture(params=sorted(MODEL_FACTORIES))
def make_model(request: pytest.FixtureRequest) -> Callable[[int], OnlineModel]:
    return MODEL_FACTORIES[request.param]


def click_example(index: int) -> OnlineExample:
    event = Event(
        event_id=f"e{index}",
        event_type=EventType.CLICK,
        user_id=f"u{index % 5}",
        item_id=f"i{index % 7}",
        event_time=CREATED_AT,
    )
    return OnlineExample(
        event.user_id,
        event.item_id,
        {"user_click_count_1h": float(index % 4), "item_price": 10.0 + index % 3},
    )


def stream(model: OnlineModel, length: int = 60) -> None:
    for index in range(length):
        model.learn_one(click_example(index), label=index % 3 == 0)


def test_model_learns_from_click(make_model: Callable[[int], OnlineModel]) -> None:
    model = make_model(0)
    click = click_example(0)
    before = model.predict_proba(click)

    for _ in range(20):
        model.learn_one(click, label=True)

    assert model.n_updates == 20
    assert model.predict_proba(click) > before


def test_model_scores_unseen_features_and_ids(
    make_model: Callable[[int], OnlineModel],
) -> None:
    model = make_model(0)
    stream(model)
    unseen = OnlineExample("new-user", "new-item", {"never_seen_feature": 1e9})

    prob = model.predict_proba(unseen)

    assert math.isfinite(prob)
    assert 0.0 <= prob <= 1.0


def test_model_scores_before_learning_anything(
    make_model: Callable[[int], OnlineModel],
) -> None:
    prob = make_model(0).predict_proba(click_example(1))

    assert 0.0 <= prob <= 1.0


def test_model_with_same_seed_gives_same_output(
    make_model: Callable[[int], OnlineModel],
) -> None:
    first, second = make_model(7), make_model(7)

    stream(first)
    stream(second)

    assert first.model_version == second.model_version
    assert [first.predict_proba(click_example(i)) for i in range(10)] == [
        second.predict_proba(click_example(i)) for i in range(10)
    ]


def test_model_checkpoint_round_trip_keeps_predictions_and_version(
    make_model: Callable[[int], OnlineModel],
) -> None:
    model = make_model(3)
    stream(model)

    restored = load_checkpoint(dump_checkpoint(model, b"key"), b"key")

    assert restored.model_version == model.model_version
    assert restored.n_updates == model.n_updates
    assert [restored.predict_proba(click_example(i)) for i in range(10)] == [
        model.predict_proba(click_example(i)) for i in range(10)
    ]


def test_model_batch_scores_match_single_scores(
    make_model: Callable[[int], OnlineModel],
) -> None:
    model = make_model(0)
    stream(model)
    examples = [click_example(i) for i in range(10)]

    # Vectorized scoring may round differently in the last bits.
    assert model.predict_proba_many(examples) == pytest.approx(
        [model.predict_proba(example) for example in examples], rel=1e-9
    )
