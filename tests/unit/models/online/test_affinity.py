from __future__ import annotations

import pickle

import pytest

from models.online import AffinityModel, OnlineExample


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
