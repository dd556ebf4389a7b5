"""Point-in-time training examples from the real feature store, for the comparison."""

from __future__ import annotations

from dataclasses import replace

import pytest
import redis
import torch

from models.multitask.dataset import build_training_set
from models.multitask.model import ModelConfig
from models.multitask.train import TrainConfig
from schemas.catalog import ItemRecord
from services.common.redis_features import FeatureStore
from services.common.settings import RedisSettings
from services.features.catalog import CatalogWriter
from services.replay.datasets import REES46_SAMPLE, load_dataset
from services.replay.datasets.base import Dataset
from services.trainer.compare import (
    ComparisonConfig,
    compare,
    markdown_table,
    paired_table,
    point_in_time_examples,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rees46() -> Dataset:
    return load_dataset("rees46", REES46_SAMPLE.parent, REES46_SAMPLE)


def _store(
    client: redis.Redis, settings: RedisSettings, items: list[ItemRecord]
) -> FeatureStore:
    writer = CatalogWriter(client, settings.key_prefix)
    for item in items:
        writer.write(item)
    store = FeatureStore(client, settings.key_prefix)
    store.load_scripts()
    return store


def test_examples_carry_features_from_before_each_event(
    rees46: Dataset, redis_client: redis.Redis, redis_settings: RedisSettings
) -> None:
    events = rees46.events[:400]
    store = _store(redis_client, redis_settings, rees46.items)

    examples = point_in_time_examples(store, events)

    assert [ex.event_id for ex in examples] == [event.event_id for event in events]
    by_user: dict[str, list[float]] = {}
    for example in examples:
        by_user.setdefault(example.user_id, []).append(
            example.user_features["user_event_count"]
        )
    repeat_user = max(by_user.values(), key=len)
    assert repeat_user[0] == 0.0
    assert repeat_user == sorted(repeat_user)
    assert repeat_user[-1] == len(repeat_user) - 1
    assert sum(ex.category_id is not None for ex in examples) == len(examples)


def test_compare_reports_every_model_and_task(
    rees46: Dataset, redis_client: redis.Redis, redis_settings: RedisSettings
) -> None:
    torch.set_num_threads(1)
    store = _store(redis_client, redis_settings, rees46.items)
    rows = build_training_set(point_in_time_examples(store, rees46.events[:1500]))
    config = replace(
        ComparisonConfig(),
        seeds=(0,),
        model=ModelConfig(
            embedding_dim=4, expert_count=2, expert_width=8, tower_width=4
        ),
        training=TrainConfig(
            epochs=2, batch_size=512, validation_fraction=0.2, patience=1
        ),
    )

    results = compare(rows, config)

    assert set(results) == {
        "multi_task",
        "single_task_click",
        "single_task_cart_add",
        "single_task_purchase",
    }
    assert set(results["multi_task"]) >= {
        "auc_click",
        "auc_cart_add",
        "auc_purchase",
        "mrr",
    }
    assert set(results["single_task_purchase"]) == {
        "auc_purchase",
        "best_epoch",
        "rows",
    }
    assert all(1 <= epoch <= 2 for epoch in results["multi_task"]["best_epoch"])
    table = markdown_table(results)
    assert table.splitlines()[0] == (
        "| model | auc_click | auc_cart_add | auc_purchase | mrr |"
    )
    assert len(table.splitlines()) == 6
    paired = paired_table(results).splitlines()
    assert paired[0].startswith("| task | multi - single AUC |")
