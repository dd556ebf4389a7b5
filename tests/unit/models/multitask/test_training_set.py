from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from models.multitask.dataset import DatasetConfig, build_training_set
from models.multitask.features import SPARSE_FIELDS, IdHasher
from models.multitask.synthetic import generate_examples
from schemas.events import EventType
from schemas.training import TrainingExample

MakeExample = Callable[..., TrainingExample]
ITEM_COLUMN = SPARSE_FIELDS.index("item_id")


def _item_hash(item_id: str) -> int:
    return IdHasher().hash("item_id", item_id)


def test_build_labels_click_with_later_cart_add_within_horizon(
    make_example: MakeExample,
) -> None:
    examples = [
        make_example(0, item_id="i1"),
        make_example(60, item_id="i1", event_type=EventType.CART_ADD),
    ]

    dataset = build_training_set(examples, DatasetConfig(negatives_per_positive=0))

    assert dataset.labels.tolist() == [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]


def test_build_ignores_cart_add_after_horizon(make_example: MakeExample) -> None:
    examples = [
        make_example(0, item_id="i1"),
        make_example(7200, item_id="i1", event_type=EventType.CART_ADD),
    ]
    config = DatasetConfig(negatives_per_positive=0, label_horizon_seconds=3600)

    dataset = build_training_set(examples, config)

    assert dataset.labels[0].tolist() == [1.0, 0.0, 0.0]


def test_build_counts_purchase_as_cart_add(make_example: MakeExample) -> None:
    examples = [
        make_example(0, item_id="i1"),
        make_example(30, item_id="i1", event_type=EventType.PURCHASE),
    ]

    dataset = build_training_set(examples, DatasetConfig(negatives_per_positive=0))

    assert dataset.labels[0].tolist() == [1.0, 1.0, 1.0]


def test_build_ignores_later_events_of_other_users(make_example: MakeExample) -> None:
    examples = [
        make_example(0, user_id="u1", item_id="i1"),
        make_example(30, user_id="u2", item_id="i1", event_type=EventType.PURCHASE),
    ]

    dataset = build_training_set(examples, DatasetConfig(negatives_per_positive=0))

    assert dataset.labels[0].tolist() == [1.0, 0.0, 0.0]


def test_build_negatives_have_zero_labels_and_share_group(
    make_example: MakeExample,
) -> None:
    examples = [make_example(i, user_id=f"u{i}", item_id=f"i{i}") for i in range(6)]
    examples.append(make_example(100, user_id="u9", item_id="i9"))

    dataset = build_training_set(examples, DatasetConfig(negatives_per_positive=3))

    last_group = dataset.groups == dataset.groups.max()
    assert dataset.is_positive[last_group].sum() == 1
    assert last_group.sum() == 4
    assert dataset.labels[last_group & ~dataset.is_positive].sum() == 0.0


def test_build_negatives_skip_items_the_user_touches_in_horizon(
    make_example: MakeExample,
) -> None:
    examples = [make_example(i, user_id="other", item_id=f"i{i}") for i in range(5)]
    examples.append(make_example(10, user_id="u1", item_id="i0"))
    examples.append(make_example(20, user_id="u1", item_id="i1"))
    config = DatasetConfig(negatives_per_positive=4, seed=3)

    dataset = build_training_set(examples, config)

    anchor = dataset.groups == 5
    negatives = dataset.ids[anchor & ~dataset.is_positive, ITEM_COLUMN]
    assert _item_hash("i0") not in negatives
    assert _item_hash("i1") not in negatives
    assert len(negatives) == 3


def test_build_negative_features_come_from_before_the_event(
    make_example: MakeExample,
) -> None:
    examples = [
        make_example(0, user_id="u2", item_id="i2", item_features={"item_n": 1.0}),
        make_example(50, user_id="u3", item_id="i2", item_features={"item_n": 99.0}),
        make_example(50, user_id="u1", item_id="i1", item_features={"item_n": 5.0}),
    ]

    dataset = build_training_set(examples, DatasetConfig(negatives_per_positive=1))

    column = dataset.numeric_names.index("item_n")
    row = (dataset.ids[:, ITEM_COLUMN] == _item_hash("i2")) & ~dataset.is_positive
    assert dataset.numeric[row, column].tolist() == [1.0]


def test_build_negative_rows_keep_the_users_point_in_time_features(
    make_example: MakeExample,
) -> None:
    examples = [
        make_example(0, user_id="u2", item_id="i2"),
        make_example(10, user_id="u1", item_id="i1", user_features={"user_n": 4.0}),
    ]

    dataset = build_training_set(examples, DatasetConfig(negatives_per_positive=1))

    column = dataset.numeric_names.index("user_n")
    assert dataset.numeric[dataset.groups == 1, column].tolist() == [4.0, 4.0]


def test_build_is_deterministic_for_a_seed() -> None:
    examples = generate_examples(400, user_count=20, item_count=40)

    first = build_training_set(examples, DatasetConfig(seed=7))
    second = build_training_set(list(reversed(examples)), DatasetConfig(seed=7))

    assert np.array_equal(first.ids, second.ids)
    assert np.array_equal(first.labels, second.labels)


def test_build_drops_duplicate_event_ids(make_example: MakeExample) -> None:
    example = make_example(0)

    dataset = build_training_set([example, example], DatasetConfig(0))

    assert len(dataset) == 1


def test_split_by_time_keeps_events_whole_and_newest_held_out() -> None:
    dataset = build_training_set(generate_examples(200, user_count=10, item_count=30))

    train, holdout = dataset.split_by_time(0.25)

    assert set(train.groups.tolist()).isdisjoint(holdout.groups.tolist())
    assert train.event_times.max() <= holdout.event_times.min()
    assert len(np.unique(holdout.groups)) == 50


def test_split_by_time_rejects_fraction_out_of_range() -> None:
    dataset = build_training_set(generate_examples(20))

    with pytest.raises(ValueError, match="holdout_fraction=1.5"):
        dataset.split_by_time(1.5)


def test_build_leaves_out_pair_features(make_example: MakeExample) -> None:
    features = {"item_click_count_1h": 2.0, "pair_category_affinity": 0.7}
    examples = [make_example(0, item_features=features)]

    dataset = build_training_set(examples, DatasetConfig(negatives_per_positive=0))

    assert "item_click_count_1h" in dataset.item_feature_names
    assert "pair_category_affinity" not in dataset.numeric_names
