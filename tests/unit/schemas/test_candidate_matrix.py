from __future__ import annotations

import math

import numpy as np
import pytest

from schemas.features import CANDIDATE_FEATURES, CandidateMatrix


def _values(rows: int) -> np.ndarray:
    return np.arange(rows * len(CANDIDATE_FEATURES), dtype=np.float64).reshape(
        rows, len(CANDIDATE_FEATURES)
    )


def test_matrix_reads_as_mapping_of_named_features() -> None:
    matrix = CandidateMatrix(["a", "b"], _values(2))

    assert list(matrix) == ["a", "b"]
    assert len(matrix) == 2
    assert "b" in matrix
    assert "c" not in matrix
    expected = dict(zip(CANDIDATE_FEATURES, _values(2)[1].tolist(), strict=True))
    assert matrix["b"] == expected


def test_column_returns_one_feature_per_candidate() -> None:
    matrix = CandidateMatrix(["a", "b"], _values(2))
    column = CANDIDATE_FEATURES.index("pair_price_zscore")

    assert matrix.column("pair_price_zscore").tolist() == _values(2)[:, column].tolist()


def test_from_mappings_marks_absent_names_nan() -> None:
    items = {"a": {"item_price": 3.0, "unknown": 1.0}, "b": {}}

    matrix = CandidateMatrix.from_mappings(items, ["b", "a"])

    assert matrix.item_ids == ("b", "a")
    assert matrix["a"]["item_price"] == 3.0
    assert math.isnan(matrix["a"]["item_stock"])
    assert all(math.isnan(value) for value in matrix["b"].values())
    assert "unknown" not in matrix["a"]


def test_from_mappings_returns_a_matching_matrix_itself() -> None:
    matrix = CandidateMatrix(["a"], _values(1))

    assert CandidateMatrix.from_mappings(matrix, ["a"]) is matrix
    assert CandidateMatrix.from_mappings(matrix, []) is not matrix


def test_matrix_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        CandidateMatrix(["a"], np.zeros((1, 3)))


def test_matrix_rejects_duplicate_ids() -> None:
    with pytest.raises(ValueError, match="unique"):
        CandidateMatrix(["a", "a"], _values(2))
