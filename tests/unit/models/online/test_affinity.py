from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest

from models.errors import CheckpointFormatError
from models.online import AffinityModel, OnlineExample
from models.online.affinity import PAIR_HASHING


def test_affinity_memory_stays_fixed_when_ids_grow() -> None:
    model = AffinityModel(
        user_buckets=32,
        item_buckets=64,
        pair_buckets=128,
        n_factors=4,
        negatives=2,
        recent_items=100,
    )
    size_before = len(pickle.dumps(model))

    for index in range(5000):
        example = OnlineExample(f"user-{index}", f"item-{index}")
        model.predict_proba(OnlineExample(f"never-{index}", f"unseen-{index}"))
        model.learn_one(example, True)
        for negative in model.sample_negatives(example):
            model.learn_one(negative, False)
        model.remember_item(example.item_id)

    # One bias and one latent vector per id bucket, a bias per pair bucket,
    # plus the intercept.
    assert model.n_parameters == 1 + (32 + 64) * (1 + 4) + 128
    # The ring of recent items is capped too; ids differ in length by a few bytes.
    assert len(pickle.dumps(model)) < size_before + 100 * 20


def test_affinity_ranks_learned_pair_above_unrelated_item() -> None:
    model = AffinityModel(user_buckets=256, item_buckets=256, negatives=3, seed=0)
    for round_index in range(300):
        for user in range(6):
            liked = OnlineExample(f"u{user}", f"liked{user % 3}")
            model.learn_one(liked, True)
            for negative in model.sample_negatives(liked):
                model.learn_one(negative, False)
            model.remember_item(f"other{round_index % 20}")

    liked_prob = model.predict_proba(OnlineExample("u0", "liked0"))
    other_prob = model.predict_proba(OnlineExample("u0", "other3"))

    assert liked_prob > other_prob


def test_sample_negatives_never_returns_positive_item() -> None:
    model = AffinityModel(negatives=4, seed=0)
    for item in ("a", "b", "a", "a"):
        model.remember_item(item)

    negatives = model.sample_negatives(OnlineExample("u", "a"))

    assert all(negative.item_id != "a" for negative in negatives)
    assert all(negative.user_id == "u" for negative in negatives)


def test_sample_negatives_returns_none_before_any_item_seen() -> None:
    assert AffinityModel(seed=0).sample_negatives(OnlineExample("u", "a")) == []


def test_affinity_rejects_zero_buckets() -> None:
    with pytest.raises(ValueError, match="pair_buckets=0"):
        AffinityModel(pair_buckets=0)


def test_predict_pairs_equals_scoring_examples() -> None:
    model = AffinityModel(user_buckets=64, item_buckets=64, pair_buckets=256)
    model.learn_many(
        [OnlineExample("u1", "i1"), OnlineExample("u2", "i2")], [True, False]
    )
    users, items = ["u1", "u1", "u2"], ["i1", "i2", "i2"]

    pairs = model.predict_pairs(users, items)

    expected = model.predict_proba_many(
        [OnlineExample(user, item) for user, item in zip(users, items, strict=True)]
    )
    assert pairs.tolist() == pytest.approx(expected, rel=1e-7)


def test_predict_pairs_with_counts_equals_one_user_per_pair() -> None:
    model = AffinityModel(user_buckets=64, item_buckets=64, pair_buckets=256)
    model.learn_many(
        [OnlineExample("u1", "i1"), OnlineExample("u2", "i2")], [True, False]
    )
    items = ["i1", "i2", "i3", "i2"]

    grouped = model.predict_pairs(["u1", "u2"], items, counts=[3, 1])

    expected = model.predict_pairs(["u1", "u1", "u1", "u2"], items)
    np.testing.assert_array_equal(grouped, expected)


def test_predict_pairs_rejects_counts_without_one_per_user() -> None:
    model = AffinityModel(user_buckets=8, item_buckets=8, pair_buckets=16)

    with pytest.raises(ValueError, match="got 1 counts for 2 user ids"):
        model.predict_pairs(["u1", "u2"], ["i1", "i2"], counts=[2])


def _pair_buckets(
    model: AffinityModel, user_ids: list[str], item_ids: list[str]
) -> np.ndarray:
    examples = [
        OnlineExample(user, item) for user, item in zip(user_ids, item_ids, strict=True)
    ]
    return model._indexes(examples).pairs


def test_pair_buckets_spread_like_uniform_draws() -> None:
    model = AffinityModel(user_buckets=8, item_buckets=8, pair_buckets=1024)
    users = [f"user-{index}" for index in range(300) for _ in range(300)]
    items = [f"item-{index}" for _ in range(300) for index in range(300)]

    counts = np.bincount(_pair_buckets(model, users, items), minlength=1024)

    # 90,000 uniform draws into 1,024 buckets: Poisson counts, variance = mean.
    mean = counts.mean()
    assert counts.min() > 0
    assert 0.9 < counts.var() / mean < 1.1


def test_pair_buckets_differ_when_user_and_item_ids_swap() -> None:
    model = AffinityModel(user_buckets=8, item_buckets=8, pair_buckets=1 << 18)
    firsts = [f"id-{index}" for index in range(5000)]
    seconds = [f"id-{index + 5000}" for index in range(5000)]

    forward = _pair_buckets(model, firsts, seconds)
    swapped = _pair_buckets(model, seconds, firsts)

    # Chance alone puts about 5000 / 2**18 swapped pairs in the same bucket.
    assert np.count_nonzero(forward == swapped) <= 2


def test_pair_hashing_maps_known_pairs_to_fixed_buckets() -> None:
    # Checkpoints rely on these buckets. A change here must come with a new
    # PAIR_HASHING version.
    model = AffinityModel()

    index = model._indexes(
        [OnlineExample("user-1", "item-1"), OnlineExample("item-1", "user-1")]
    )

    assert PAIR_HASHING == 2
    assert index.users.tolist() == [11418, 27620]
    assert index.pairs.tolist() == [117502, 202124]


def test_version_1_state_loads_with_pair_biases_reset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = AffinityModel(user_buckets=8, item_buckets=8, pair_buckets=16)
    model.learn_many([OnlineExample("u1", "i1"), OnlineExample("u2", "i2")], [1, 0])
    # Models saved before the version was recorded have no such attribute.
    del model.pair_hashing
    data = pickle.dumps(model)

    with caplog.at_level(logging.WARNING, logger="models.online.affinity"):
        restored = pickle.loads(data)

    assert restored.pair_hashing == PAIR_HASHING
    assert not restored.pair_bias.any()
    assert model.pair_bias.any()
    np.testing.assert_array_equal(restored.user_bias, model.user_bias)
    np.testing.assert_array_equal(restored.item_factors, model.item_factors)
    assert "pair biases reset" in caplog.text


def test_affinity_model_refuses_an_unknown_pair_hashing() -> None:
    model = AffinityModel(user_buckets=8, item_buckets=8, pair_buckets=16)
    model.pair_hashing = 3
    data = pickle.dumps(model)

    with pytest.raises(CheckpointFormatError, match="pair hashing version 3"):
        pickle.loads(data)


def test_affinity_model_keeps_pair_hashing_through_pickle() -> None:
    model = AffinityModel(user_buckets=8, item_buckets=8, pair_buckets=16)

    restored = pickle.loads(pickle.dumps(model))

    assert restored.pair_hashing == PAIR_HASHING


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"pair_hashing": True}, "pair hashing version True"),
        ({"pair_hashing": "2"}, "pair hashing version '2'"),
        ({"pair_bias": None}, "pair biases of type NoneType"),
    ],
    ids=["bool-version", "text-version", "no-pair-biases"],
)
def test_affinity_model_refuses_malformed_state(
    changes: dict[str, object], fragment: str
) -> None:
    model = AffinityModel(user_buckets=8, item_buckets=8, pair_buckets=16)
    state = {**model.__dict__, **changes}
    restored = AffinityModel.__new__(AffinityModel)

    with pytest.raises(CheckpointFormatError, match=fragment):
        restored.__setstate__(state)
