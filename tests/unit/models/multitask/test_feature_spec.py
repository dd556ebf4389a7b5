from __future__ import annotations

import numpy as np
import pytest

from models.multitask.features import MISSING_ID_HASH, FeatureSpec, IdHasher


def test_id_hasher_is_stable_across_instances() -> None:
    first = IdHasher().hash("item_id", "12345")

    second = IdHasher().hash("item_id", "12345")

    assert first == second
    assert 0 <= first < 2**63


def test_id_hasher_separates_fields() -> None:
    hasher = IdHasher()

    assert hasher.hash("item_id", "5") != hasher.hash("brand", "5")


def test_id_hasher_marks_missing_id() -> None:
    hasher = IdHasher()

    assert hasher.hash("brand", None) == MISSING_ID_HASH
    assert hasher.hash("brand", "") == MISSING_ID_HASH


def test_feature_spec_fit_standardises_columns() -> None:
    numeric = np.array([[0.0, 1.0, 5.0], [9.0, 3.0, 5.0]], dtype=np.float32)

    spec = FeatureSpec.fit(
        ["user_a"], ["item_b"], numeric, ["user_a", "item_b", "price"]
    )

    transformed = np.log1p(numeric)
    assert spec.means == pytest.approx(tuple(transformed.mean(axis=0)), rel=1e-5)
    assert spec.stds[0] == pytest.approx(float(transformed[:, 0].std()), rel=1e-5)
    assert spec.stds[2] == 1.0


def test_feature_spec_select_fills_absent_columns_with_zero() -> None:
    spec = FeatureSpec(("user_a", "user_new"), ("item_b",), (0.0,) * 4, (1.0,) * 4)
    numeric = np.array([[7.0, 3.0, 2.0]], dtype=np.float32)

    selected = spec.select(numeric, ["item_b", "price", "user_a"])

    assert selected.tolist() == [[2.0, 0.0, 7.0, 3.0]]


def test_feature_spec_round_trips_through_dict() -> None:
    spec = FeatureSpec(("user_a",), ("item_b",), (0.5, 1.0, 2.0), (1.0, 2.0, 3.0))

    restored = FeatureSpec.from_dict(spec.to_dict())

    assert restored == spec


def test_feature_spec_rejects_statistics_of_wrong_length() -> None:
    with pytest.raises(ValueError, match="3 numeric columns but 2 means"):
        FeatureSpec(("user_a",), ("item_b",), (0.0, 0.0), (1.0, 1.0, 1.0))


def test_feature_spec_rejects_missing_field_in_dict() -> None:
    data = FeatureSpec(("user_a",), (), (0.0, 0.0), (1.0, 1.0)).to_dict()
    del data["means"]

    with pytest.raises(ValueError, match="'means'"):
        FeatureSpec.from_dict(data)


def test_feature_spec_rejects_fractional_bucket_count() -> None:
    buckets = {"user_id": 8.5, "item_id": 8, "category_id": 8, "brand": 8}

    with pytest.raises(ValueError, match="expected an integer of at least 2"):
        FeatureSpec(("user_a",), (), (0.0, 0.0), (1.0, 1.0), buckets)  # type: ignore[arg-type]
