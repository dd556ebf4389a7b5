from __future__ import annotations

import random

import numpy as np
import pytest

from models.online import ConversionModel, OnlineExample
from models.online.base import squash_features
from models.online.conversion import squash_matrix


def test_conversion_model_ignores_feature_names_beyond_cap() -> None:
    model = ConversionModel("cart_add", max_features=3)

    for index in range(50):
        model.learn_one(OnlineExample("u", "i", {f"f{index}": 1.0}), index % 2 == 0)

    assert len(model._known_features) == 3


@pytest.mark.parametrize("learner", ["logistic_regression", "alma", "fm"])
def test_conversion_model_separates_informative_feature(learner: str) -> None:
    model = ConversionModel("cart_add", learner=learner, seed=1)  # type: ignore[arg-type]
    rng = random.Random(0)
    for _ in range(3000):
        signal = rng.random()
        label = rng.random() < signal
        model.learn_one(OnlineExample("u", "i", {"signal": signal * 10}), label)

    high = model.predict_proba(OnlineExample("u", "i", {"signal": 9.0}))
    low = model.predict_proba(OnlineExample("u", "i", {"signal": 1.0}))

    assert high > low


def test_conversion_model_rejects_unknown_learner() -> None:
    with pytest.raises(ValueError, match="learner='tree'"):
        ConversionModel("cart_add", learner="tree")  # type: ignore[arg-type]


def test_squash_features_drops_non_finite_values() -> None:
    squashed = squash_features({"a": float("nan"), "b": float("inf"), "c": -3.0})

    assert list(squashed) == ["c"]
    assert squashed["c"] < 0


def test_squash_matrix_matches_squash_features_and_keeps_input() -> None:
    values = [-3.5, -0.0, 0.0, 2.0, 1e300, float("nan"), float("inf")]
    raw = np.array([values])

    squashed = squash_matrix(raw)

    finite = squash_features({str(column): v for column, v in enumerate(values)})
    assert [squashed[0, int(column)] for column in finite] == pytest.approx(
        list(finite.values()), rel=1e-15
    )
    assert np.isnan(squashed[0, 5])
    assert squashed[0, 6] == np.inf
    assert np.isnan(raw[0, 5])
    assert raw[0, 0] == -3.5
