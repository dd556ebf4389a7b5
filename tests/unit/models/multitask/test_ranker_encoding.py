from __future__ import annotations

import numpy as np
import pytest

from models.multitask import ranker as ranker_module
from models.multitask.dataset import build_training_set
from models.multitask.features import SPARSE_FIELDS, IdHasher
from models.multitask.ranker import (
    CandidateColumns,
    CandidateInput,
    Ranker,
    RankRequest,
    _as_input,
)
from models.multitask.synthetic import generate_examples
from models.multitask.train import TrainConfig, fit_feature_spec, train_new_model
from tests.unit.models.multitask.conftest import TINY_BUCKETS, TINY_MODEL


@pytest.fixture(scope="module")
def ranker() -> Ranker:
    dataset = build_training_set(generate_examples(300, user_count=10, item_count=30))
    spec = fit_feature_spec(dataset, hash_buckets=TINY_BUCKETS)
    model, _ = train_new_model(spec, TINY_MODEL, dataset, TrainConfig(epochs=1))
    return Ranker(model, spec, "ranker-test")


def _requests(ranker: Ranker) -> list[RankRequest]:
    spec = ranker._spec
    full = {
        name: float(index + 1) for index, name in enumerate(spec.item_feature_names)
    }
    partial = dict(list(full.items())[:1])
    user = {name: 0.5 for name in spec.user_feature_names}
    return [
        RankRequest("u1", user, [CandidateInput("i1", full, "c1", "b1", 9.0)]),
        RankRequest("u2", {}, []),
        RankRequest(
            "u3",
            {},
            [
                CandidateInput("i2", partial, None, "b2", None),
                ("i3", {**full, "item_price": 4.0}),
                ("i4", {}),
            ],
        ),
    ]


def test_encode_fills_absent_values_with_zero(ranker: Ranker) -> None:
    spec = ranker._spec
    requests = _requests(ranker)

    ids, numeric = ranker._encode(requests, 4)

    user_width = len(spec.user_feature_names)
    item_width = len(spec.item_feature_names)
    assert ids.shape == (4, 4)
    assert np.all(numeric[0, :user_width] == 0.5)
    assert np.all(numeric[1:, :user_width] == 0.0)
    assert numeric[0, user_width:].tolist() == [
        *range(1, item_width + 1),
        9.0,
    ]
    assert numeric[1, user_width + 1 : user_width + item_width].tolist() == [0.0] * (
        item_width - 1
    )
    assert numeric[1, -1] == 0.0
    assert numeric[2, -1] == 4.0
    assert np.all(numeric[3] == 0.0)
    assert len(set(ids[:, 0].tolist())) == 2


def test_batch_equals_single_scoring(ranker: Ranker) -> None:
    requests = _requests(ranker)

    together = ranker.predict_many(requests)

    for request, probs in zip(requests, together, strict=True):
        assert probs.shape == (len(request.candidates), 3)
        for row, candidate in enumerate(request.candidates):
            alone = ranker.predict(request.user_id, request.user_features, [candidate])
            np.testing.assert_allclose(probs[row], alone[0], rtol=1e-6, atol=1e-7)


def _as_columns(
    candidates: list[CandidateInput], names: tuple[str, ...]
) -> CandidateColumns:
    return CandidateColumns(
        item_ids=[candidate.item_id for candidate in candidates],
        category_ids=[candidate.category_id for candidate in candidates],
        brands=[candidate.brand for candidate in candidates],
        prices=np.array(
            [
                np.nan if candidate.price is None else candidate.price
                for candidate in candidates
            ]
        ),
        features=np.array(
            [
                [candidate.item_features.get(name, np.nan) for name in names]
                for candidate in candidates
            ]
        ),
        feature_names=names,
    )


def test_columns_score_like_candidate_inputs(ranker: Ranker) -> None:
    spec = ranker._spec
    full = {
        name: float(index + 1) for index, name in enumerate(spec.item_feature_names)
    }
    candidates = [
        CandidateInput("i1", full, "c1", "b1", 9.0),
        CandidateInput("i2", dict(list(full.items())[:2]), None, "b2", None),
        CandidateInput("i3", {}, "c3", None, 4.0),
    ]
    # Reversed order, one name the model never saw and one it expects missing.
    names = ("not_a_feature", *reversed(spec.item_feature_names[1:]))
    user = {name: 0.25 for name in spec.user_feature_names}
    trimmed = [
        CandidateInput(
            candidate.item_id,
            {
                name: value
                for name, value in candidate.item_features.items()
                if name in names
            },
            candidate.category_id,
            candidate.brand,
            candidate.price,
        )
        for candidate in candidates
    ]

    by_inputs = ranker.predict_many([RankRequest("u1", user, trimmed)])
    by_columns = ranker.predict_many(
        [RankRequest("u1", user, _as_columns(candidates, names))]
    )

    np.testing.assert_array_equal(by_columns[0], by_inputs[0])


def test_columns_and_inputs_mix_in_one_batch(ranker: Ranker) -> None:
    spec = ranker._spec
    candidates = [
        CandidateInput("i1", {spec.item_feature_names[0]: 3.0}, "c1", "b1", 2.0)
    ]
    columns = _as_columns(candidates, spec.item_feature_names)

    mixed = ranker.predict_many(
        [
            RankRequest("u1", {}, candidates),
            RankRequest("u2", {}, []),
            RankRequest("u1", {}, columns),
        ]
    )

    assert [probs.shape for probs in mixed] == [(1, 3), (0, 3), (1, 3)]
    np.testing.assert_allclose(mixed[0], mixed[2], rtol=1e-6, atol=1e-7)


def _expected_ids(requests: list[RankRequest]) -> list[list[int]]:
    hasher = IdHasher()
    rows = []
    for request in requests:
        for candidate in map(_as_input, request.candidates):
            values = (
                request.user_id,
                candidate.item_id,
                candidate.category_id,
                candidate.brand,
            )
            rows.append(
                [
                    hasher.hash(field, value)
                    for field, value in zip(SPARSE_FIELDS, values, strict=True)
                ]
            )
    return rows


def test_encode_hashes_each_id_field_of_each_candidate(ranker: Ranker) -> None:
    requests = _requests(ranker)

    ids, _ = ranker._encode(requests, 4)

    assert ids.tolist() == _expected_ids(requests)


def test_encode_hashes_correctly_after_the_memo_starts_over(
    ranker: Ranker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ranker_module, "_MAX_MEMO_ITEMS", 2)
    requests = _requests(ranker)

    first, _ = ranker._encode(requests, 4)
    again, _ = ranker._encode(requests[::-1], 4)

    assert first.tolist() == _expected_ids(requests)
    assert again.tolist() == _expected_ids(requests[::-1])
