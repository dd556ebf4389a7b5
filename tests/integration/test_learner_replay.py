"""Prequential replay of the committed REES46 sample through the real feature
store and the learning stage."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from services.common.redis_features import FeatureStore
from services.common.settings import RedisSettings
from services.learner.evaluation import ReplayReport, replay_prequential
from services.learner.settings import LearnerSettings
from services.learner.stage import LearningStage
from services.replay.datasets import rees46

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SAMPLE = Path(__file__).parents[2] / "data/rees46/events_2019-10-01_0000-0240utc.csv.gz"


@pytest.fixture(scope="module")
def report(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> ReplayReport:
    redis_settings = RedisSettings(url=redis_url, key_prefix="learner-replay")
    client = redis.Redis.from_url(redis_url)
    settings = LearnerSettings(
        redis=redis_settings,
        checkpoint_dir=tmp_path_factory.mktemp("checkpoints"),
        seed=7,
    )
    store = FeatureStore(client, redis_settings.key_prefix)
    store.load_scripts()
    stage = LearningStage(settings, client, clock=lambda: 0.0)

    result = replay_prequential(rees46.load(SAMPLE).events, store, stage)

    client.close()
    return result


def test_replay_resolves_cart_add_examples_of_both_labels(report: ReplayReport) -> None:
    cart = report.tasks["cart_add"]

    assert report.events == 11562
    assert len(cart.labels) > 1000
    assert 50 < cart.positives < len(cart.labels) - 50


def test_cart_model_prequential_auc_beats_item_rate(report: ReplayReport) -> None:
    cart = report.tasks["cart_add"]

    assert cart.model_auc() > cart.baseline_auc() + 0.2


def test_cart_model_auc_at_trigger_time_beats_item_rate(report: ReplayReport) -> None:
    cart = report.tasks["cart_add"]

    assert cart.trigger_auc() > cart.baseline_auc() + 0.05


def test_affinity_model_beats_chance_on_sampled_negatives(report: ReplayReport) -> None:
    assert report.affinity.model_auc() > 0.6
