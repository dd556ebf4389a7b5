"""The scoring stage inside the real hot path, on the real broker and Redis.

A slice of the committed REES46 sample, with generated promotions and reviews,
runs through the hot-path consumer with the features, learning and scoring
stages. Every slate is read back from the recommendation topics and checked
against every rule.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import torch
from confluent_kafka import Consumer, Producer

from models.multitask.dataset import build_training_set
from models.multitask.model import ModelConfig
from models.multitask.synthetic import generate_examples
from models.multitask.train import TrainConfig, fit_feature_spec, train_new_model
from models.registry import ArtifactMetadata, DataWindow, ModelRegistry
from schemas.catalog import ItemRecord
from schemas.events import Event, EventType
from schemas.recommendations import CandidateSource, Slate, Surface
from services.common.kafka import (
    consumer_config,
    producer_config,
)
from services.common.model_watcher import ModelWatcher
from services.common.redis_features import FeatureStore
from services.common.settings import KafkaSettings, RedisSettings, TopicSettings
from services.features.catalog import CatalogWriter
from services.hotpath.consumer import HotPathConsumer
from services.hotpath.settings import HotPathSettings
from services.learner.settings import LearnerSettings
from services.learner.stage import LearningStage
from services.replay.datasets import REES46_SAMPLE, rees46
from services.replay.generated import GeneratedCatalog, generate_catalog
from services.scorer.session_knn import session_key
from services.scorer.settings import ScorerSettings
from services.scorer.stage import ScoringStage, build_scoring_stage
from services.trainer.announcer import ModelAnnouncer
from tests.topics import make_topics

pytestmark = pytest.mark.integration

SAMPLE_EVENTS = 2500
OUT_OF_STOCK_ITEMS = 5
DEADLINE_SECONDS = 240.0


@dataclass
class Pipeline:
    """One private hot path: topics, Redis prefix, consumer and stages."""

    kafka: KafkaSettings
    redis: RedisSettings
    topics: TopicSettings
    client: redis.Redis
    producer: Producer
    hotpath: HotPathConsumer
    scoring: ScoringStage
    scorer_settings: ScorerSettings
    thread: threading.Thread | None = None

    def publish(self, events: list[Event]) -> None:
        for event in events:
            self.producer.produce(
                self.topics.events,
                key=event.user_id.encode(),
                value=event.model_dump_json().encode(),
            )
        assert self.producer.flush(30) == 0

    def start(self) -> None:
        self.thread = threading.Thread(target=self.hotpath.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.hotpath.stop()
        self.thread.join(30)

    def wait_for(self, surface: Surface, count: int) -> dict[Surface, list[Slate]]:
        """Wait until ``count`` slates of ``surface`` are readable; return all slates.

        After the count is reached, reading goes on until the topics stay idle
        for two seconds, so slates of the other surfaces are complete too.
        """
        reader = SlateReader(self.kafka, self.topics)
        deadline = time.monotonic() + DEADLINE_SECONDS
        while len(reader.slates[surface]) < count:
            assert time.monotonic() < deadline, (
                f"only {len(reader.slates[surface])} of {count} {surface} slates "
                f"within {DEADLINE_SECONDS} s"
            )
            reader.read(0.2)
        reader.read(2.0)
        reader.close()
        return reader.slates


class SlateReader:
    """Reads every recommendation topic from the start."""

    def __init__(self, kafka: KafkaSettings, topics: TopicSettings) -> None:
        group = f"slate-reader-{uuid.uuid4().hex[:8]}"
        self.consumer = Consumer(consumer_config(kafka, group, fetch_wait_ms=10))
        self.consumer.subscribe(
            [topics.recommendations(surface.value) for surface in Surface]
        )
        self.slates: dict[Surface, list[Slate]] = defaultdict(list)

    def read(self, idle_seconds: float) -> None:
        idle_until = time.monotonic() + idle_seconds
        while time.monotonic() < idle_until:
            for message in self.consumer.consume(1000, 0.05):
                if message.error() is None:
                    slate = Slate.model_validate_json(message.value() or b"")
                    self.slates[slate.surface].append(slate)
                    idle_until = time.monotonic() + idle_seconds

    def close(self) -> None:
        self.consumer.close()


def make_pipeline(
    kafka_bootstrap: str,
    redis_url: str,
    tmp_path: Path,
    models: ModelWatcher | None = None,
    topics: TopicSettings | None = None,
    group: str | None = None,
    **scorer: object,
) -> Pipeline:
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    redis_settings = RedisSettings(
        url=redis_url, key_prefix=f"t{uuid.uuid4().hex[:12]}"
    )
    stem = uuid.uuid4().hex[:10]
    topics = topics or make_topics(kafka)
    client = redis.Redis.from_url(redis_url)
    producer = Producer(producer_config(kafka, linger_ms=2))
    hotpath_settings = HotPathSettings(
        kafka=kafka, redis=redis_settings, topics=topics, batch_size=200, metrics_port=0
    )
    features = FeatureStore(client, redis_settings.key_prefix)
    learning = LearningStage(
        LearnerSettings(redis=redis_settings, checkpoint_dir=tmp_path / "checkpoints"),
        client,
    )
    scorer_settings = ScorerSettings(
        kafka=kafka, redis=redis_settings, topics=topics, **scorer
    )
    scoring = build_scoring_stage(
        scorer_settings,
        client,
        producer,
        models=models,
        signals=learning,
        features=features,
    )
    group = group or f"hotpath-{stem}"
    consumer = Consumer(consumer_config(kafka, group, fetch_wait_ms=10))
    hotpath = HotPathConsumer(
        hotpath_settings, consumer, producer, features, [learning, scoring]
    )
    return Pipeline(
        kafka,
        redis_settings,
        topics,
        client,
        producer,
        hotpath,
        scoring,
        scorer_settings,
    )


@dataclass
class Replay:
    """The replayed sample, its catalog and every slate read back."""

    events: list[Event]
    items: dict[str, ItemRecord]
    catalog: GeneratedCatalog
    slates: dict[Surface, list[Slate]]
    scorer_settings: ScorerSettings


@pytest.fixture(scope="module")
def replay(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replay]:
    dataset = rees46.load(REES46_SAMPLE)
    events = dataset.events[:SAMPLE_EVENTS]
    catalog = generate_catalog(dataset.events, dataset.items, seed=11)
    popular = Counter(event.item_id for event in events).most_common(OUT_OF_STOCK_ITEMS)
    sold_out = {item_id for item_id, _ in popular}
    items = {
        item.item_id: item.model_copy(update={"stock": 0})
        if item.item_id in sold_out
        else item
        for item in dataset.items
    }
    pipeline = make_pipeline(
        kafka_bootstrap, redis_url, tmp_path_factory.mktemp("replay")
    )
    writer = CatalogWriter(pipeline.client, pipeline.redis.key_prefix)
    for record in [*items.values(), *catalog.promotions, *catalog.reviews]:
        writer.write(record)

    pipeline.start()
    pipeline.publish(events)
    slates = pipeline.wait_for(Surface.PRODUCTS, len(events))
    pipeline.stop()
    yield Replay(events, items, catalog, slates, pipeline.scorer_settings)
    pipeline.client.close()


def test_replay_yields_one_products_slate_per_event(replay: Replay) -> None:
    triggers = Counter(
        slate.trigger_event_id for slate in replay.slates[Surface.PRODUCTS]
    )

    assert set(triggers) == {event.event_id for event in replay.events}
    assert max(triggers.values()) == 1


def test_replay_yields_bundles_slate_per_cart_add(replay: Replay) -> None:
    cart_adds = [
        e.event_id for e in replay.events if e.event_type is EventType.CART_ADD
    ]

    triggers = [slate.trigger_event_id for slate in replay.slates[Surface.BUNDLES]]

    assert cart_adds
    assert sorted(triggers) == sorted(cart_adds)


def test_replay_yields_reviews_slate_per_click_on_reviewed_item(replay: Replay) -> None:
    reviewed = {review.item_id for review in replay.catalog.reviews}
    clicks = [
        event.event_id
        for event in replay.events
        if event.event_type is EventType.CLICK and event.item_id in reviewed
    ]

    triggers = [slate.trigger_event_id for slate in replay.slates[Surface.REVIEWS]]

    assert clicks
    assert sorted(triggers) == sorted(clicks)


def test_replay_reviews_slates_hold_reviews_of_the_clicked_item(replay: Replay) -> None:
    review_items = {
        review.review_id: review.item_id for review in replay.catalog.reviews
    }

    for slate in replay.slates[Surface.REVIEWS]:
        assert slate.items
        for entry in slate.items:
            assert review_items[entry.review_id or ""] == slate.context_item_id


def test_replay_yields_promotions_slate_per_configured_event(replay: Replay) -> None:
    configured = replay.scorer_settings.surfaces.promotion_events
    expected = [e.event_id for e in replay.events if e.event_type in configured]

    triggers = [slate.trigger_event_id for slate in replay.slates[Surface.PROMOTIONS]]

    assert sorted(triggers) == sorted(expected)
    assert any(slate.items for slate in replay.slates[Surface.PROMOTIONS])


def test_replay_promotions_are_active_and_eligible(replay: Replay) -> None:
    promotions = {p.promotion_id: p for p in replay.catalog.promotions}
    events = {event.event_id: event for event in replay.events}

    for slate in replay.slates[Surface.PROMOTIONS]:
        at = events[slate.trigger_event_id].event_time
        for entry in slate.items:
            promotion = promotions[entry.promotion_id or ""]
            item = replay.items[entry.item_id]
            assert promotion.starts_at <= at < promotion.ends_at
            assert not promotion.item_ids or item.item_id in promotion.item_ids
            assert (
                not promotion.category_ids or item.category_id in promotion.category_ids
            )
            assert not promotion.brands or item.brand in promotion.brands


def test_replay_slates_keep_every_rule(replay: Replay) -> None:
    rules = replay.scorer_settings.rules
    events = {event.event_id: event for event in replay.events}
    purchased_before = _purchases_before(replay.events)
    item_slates = [
        *replay.slates[Surface.PRODUCTS],
        *replay.slates[Surface.BUNDLES],
        *replay.slates[Surface.PROMOTIONS],
    ]

    for slate in item_slates:
        event = events[slate.trigger_event_id]
        item_ids = [entry.item_id for entry in slate.items]
        assert slate.user_id == event.user_id
        assert [entry.rank for entry in slate.items] == list(
            range(1, len(item_ids) + 1)
        )
        assert event.item_id not in item_ids, slate.recommendation_id
        assert len(set(item_ids)) == len(item_ids), slate.recommendation_id
        for item_id in item_ids:
            item = replay.items.get(item_id)
            assert item is None or item.stock != 0, (slate.recommendation_id, item_id)
            if item is None or not item.is_consumable:
                assert item_id not in purchased_before[event.event_id]
        if slate.surface is not Surface.PROMOTIONS:
            categories = Counter(
                replay.items[item_id].category_id
                for item_id in item_ids
                if item_id in replay.items and replay.items[item_id].category_id
            )
            assert max(categories.values(), default=0) <= rules.max_per_category


def test_replay_slates_carry_heuristic_version_and_latency(replay: Replay) -> None:
    products = replay.slates[Surface.PRODUCTS]

    assert {slate.model_version for slate in products} == {"heuristic-v1"}
    assert all(slate.latency_ms > 0 for slate in products)
    assert sum(len(slate.items) for slate in products) / len(products) >= 10


def test_replay_products_use_several_candidate_sources(replay: Replay) -> None:
    sources = Counter(
        entry.source
        for slate in replay.slates[Surface.PRODUCTS]
        for entry in slate.items
    )

    assert sources[CandidateSource.COVISITATION] > 0
    assert sources[CandidateSource.SESSION_KNN] > 0
    assert (
        sources[CandidateSource.TRENDING] + sources[CandidateSource.CATEGORY_TRENDING]
        > 0
    )


def _purchases_before(events: list[Event]) -> dict[str, set[str]]:
    """Return, per event id, the items its user bought up to and including it."""
    bought: dict[str, set[str]] = defaultdict(set)
    result = {}
    for event in events:
        if event.event_type is EventType.PURCHASE:
            bought[event.user_id].add(event.item_id)
        result[event.event_id] = set(bought[event.user_id])
    return result


def _kettle_then_teapot(first_id: str, second_id: str) -> tuple[Event, Event]:
    """Return two clicks of one user in one session, on two new items 30 s apart."""
    start = rees46.load(REES46_SAMPLE).events[0].event_time
    first = Event(
        event_id=first_id,
        event_type=EventType.CLICK,
        user_id="shopper",
        item_id="kettle",
        event_time=start,
        session_id="visit",
    )
    second = first.model_copy(
        update={
            "event_id": second_id,
            "item_id": "teapot",
            "event_time": start + timedelta(seconds=30),
        }
    )
    return first, second


def test_slate_for_event_reflects_that_event(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    first, second = _kettle_then_teapot("n-1", "n")
    pipeline = make_pipeline(kafka_bootstrap, redis_url, tmp_path)
    features = FeatureStore(pipeline.client, pipeline.redis.key_prefix)

    pipeline.start()
    pipeline.publish([first])
    pipeline.wait_for(Surface.PRODUCTS, 1)
    neighbours_before = features.covisited(["teapot"], 10)
    pipeline.publish([second])
    slates = pipeline.wait_for(Surface.PRODUCTS, 2)[Surface.PRODUCTS]
    pipeline.stop()

    [slate] = [slate for slate in slates if slate.trigger_event_id == "n"]
    assert neighbours_before == []
    assert [(entry.item_id, entry.source) for entry in slate.items] == [
        ("kettle", CandidateSource.COVISITATION)
    ]


def _read_at(slate: Slate) -> float:
    """Return the wall-clock time the hot path read the slate's trigger."""
    return slate.generated_at.timestamp() - slate.latency_ms / 1000.0


def test_slate_ignores_later_event_of_user(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    first, second = _kettle_then_teapot("n", "n+1")
    pipeline = make_pipeline(kafka_bootstrap, redis_url, tmp_path)

    pipeline.publish([first, second])
    pipeline.start()
    slates = pipeline.wait_for(Surface.PRODUCTS, 2)[Surface.PRODUCTS]
    pipeline.stop()

    by_trigger = {slate.trigger_event_id: slate for slate in slates}
    assert abs(_read_at(by_trigger["n"]) - _read_at(by_trigger["n+1"])) < 0.001
    assert [entry.item_id for entry in by_trigger["n"].items] == []
    assert [(entry.item_id, entry.source) for entry in by_trigger["n+1"].items] == [
        ("kettle", CandidateSource.COVISITATION)
    ]


def test_restarted_hot_path_warms_session_index(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    topics = make_topics(KafkaSettings(bootstrap=kafka_bootstrap))
    group = f"hotpath-{uuid.uuid4().hex[:10]}"
    events = rees46.load(REES46_SAMPLE).events[:200]
    first = make_pipeline(
        kafka_bootstrap, redis_url, tmp_path, topics=topics, group=group
    )
    first.start()
    first.publish(events)
    first.wait_for(Surface.PRODUCTS, len(events))
    first.stop()

    second = make_pipeline(
        kafka_bootstrap, redis_url, tmp_path, topics=topics, group=group
    )
    second.start()
    deadline = time.monotonic() + 60
    while len(second.scoring._sessions) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    second.stop()

    sessions = {session_key(event.user_id, event.session_id) for event in events}
    assert len(second.scoring._sessions) == len(sessions)


def _announce_tiny_ranker(kafka: KafkaSettings, topic: str, root: Path) -> str:
    """Train a small multi-task ranker, save it and announce it; return its version."""
    torch.set_num_threads(1)
    rows = build_training_set(generate_examples(600, user_count=30, item_count=80))
    spec = fit_feature_spec(rows)
    config = ModelConfig(embedding_dim=4, expert_count=2, expert_width=8, tower_width=4)
    model, _ = train_new_model(
        spec, config, rows, TrainConfig(epochs=1, batch_size=256)
    )
    registry = ModelRegistry(root)
    window = DataWindow(start=None, end=None, examples=600, rows=len(rows))
    metadata = registry.save("ranker", model, spec, window, {})
    announcer = ModelAnnouncer(kafka, topic)
    announcer.announce(metadata, str(registry.path_of(metadata.model_version)))
    announcer.close()
    return metadata.model_version


def test_replay_ranks_with_announced_multitask_ranker(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    topics = make_topics(kafka)
    version = _announce_tiny_ranker(kafka, topics.models, tmp_path / "registry")
    watcher = ModelWatcher(kafka, topics.models, "ranker")
    watcher.start()
    assert watcher.wait_for(version, 60)
    pipeline = make_pipeline(
        kafka_bootstrap, redis_url, tmp_path, models=watcher, topics=topics
    )
    events = rees46.load(REES46_SAMPLE).events[:300]

    pipeline.start()
    pipeline.publish(events)
    slates = pipeline.wait_for(Surface.PRODUCTS, len(events))
    pipeline.stop()
    watcher.stop()

    products = slates[Surface.PRODUCTS]
    assert {slate.model_version for slate in products} == {version}
    assert all(
        set(entry.task_probs)
        == {EventType.CLICK, EventType.CART_ADD, EventType.PURCHASE}
        for slate in products
        for entry in slate.items
    )


def _save_rankers(
    root: Path, count: int
) -> tuple[ModelRegistry, list[ArtifactMetadata]]:
    """Train ``count`` small rankers with different seeds and save them."""
    torch.set_num_threads(1)
    rows = build_training_set(generate_examples(600, user_count=30, item_count=80))
    spec = fit_feature_spec(rows)
    config = ModelConfig(embedding_dim=4, expert_count=2, expert_width=8, tower_width=4)
    registry = ModelRegistry(root)
    window = DataWindow(start=None, end=None, examples=600, rows=len(rows))
    saved = []
    for seed in range(count):
        model, _ = train_new_model(
            spec, config, rows, TrainConfig(epochs=1, batch_size=256, seed=seed)
        )
        saved.append(registry.save("ranker", model, spec, window, {}))
    return registry, saved


class _ProductsReader:
    """Reads products slates from the start, keeping each partition's order."""

    def __init__(self, kafka: KafkaSettings, topics: TopicSettings) -> None:
        group = f"swap-reader-{uuid.uuid4().hex[:8]}"
        self.consumer = Consumer(consumer_config(kafka, group, fetch_wait_ms=10))
        self.consumer.subscribe([topics.recommendations(Surface.PRODUCTS.value)])
        self.by_partition: dict[int, list[Slate]] = defaultdict(list)

    @property
    def count(self) -> int:
        return sum(len(slates) for slates in self.by_partition.values())

    def read_until(self, count: int, idle_seconds: float = 0.0) -> None:
        """Read until ``count`` slates arrived, then while any keep arriving."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        idle_until: float | None = None
        while idle_until is None or time.monotonic() < idle_until:
            assert time.monotonic() < deadline, f"only {self.count} of {count} slates"
            for message in self.consumer.consume(500, 0.1):
                if message.error() is None:
                    slate = Slate.model_validate_json(message.value() or b"")
                    self.by_partition[message.partition() or 0].append(slate)
            if self.count >= count and idle_until is None:
                idle_until = time.monotonic() + idle_seconds

    def close(self) -> None:
        self.consumer.close()


def test_hot_swap_switches_version_once_per_partition(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    topics = make_topics(kafka)
    registry, (first, second, corrupt) = _save_rankers(tmp_path / "registry", 3)
    weights = registry.path_of(corrupt.model_version) / "weights.safetensors"
    damaged = bytearray(weights.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    weights.write_bytes(bytes(damaged))
    announcer = ModelAnnouncer(kafka, topics.models)
    announcer.announce(first, str(registry.path_of(first.model_version)))
    watcher = ModelWatcher(kafka, topics.models, "ranker")
    watcher.start()
    assert watcher.wait_for(first.model_version, 60)
    pipeline = make_pipeline(
        kafka_bootstrap, redis_url, tmp_path, models=watcher, topics=topics
    )
    events = rees46.load(REES46_SAMPLE).events[:400]
    reader = _ProductsReader(kafka, topics)

    pipeline.start()
    # The first chunk waits for the consumer group to form, so every later
    # chunk arrives while the hot path is already consuming.
    pipeline.publish(events[:20])
    reader.read_until(20)
    for start in range(20, len(events), 20):
        if start == 200:
            for meta in (corrupt, second):
                announcer.announce(meta, str(registry.path_of(meta.model_version)))
        pipeline.publish(events[start : start + 20])
        # A steady stream: the swap lands while events keep arriving.
        time.sleep(0.05)
    reader.read_until(len(events), idle_seconds=2.0)
    pipeline.stop()
    watcher.stop()
    announcer.close()
    reader.close()

    triggers = Counter(
        slate.trigger_event_id
        for slates in reader.by_partition.values()
        for slate in slates
    )
    assert set(triggers) == {event.event_id for event in events}
    assert max(triggers.values()) == 1
    seen_versions = set()
    for slates in reader.by_partition.values():
        versions = [slate.model_version for slate in slates]
        switches = sum(
            1
            for index in range(1, len(versions))
            if versions[index] != versions[index - 1]
        )
        assert versions[0] == first.model_version
        assert switches <= 1
        seen_versions.update(versions)
    assert seen_versions == {first.model_version, second.model_version}
