"""On-demand slates with the API's own session index and the learner's checkpoints.

The index is fed from a real events topic on the test broker, and the user
histories that anchor the slates live in the test redis-server.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis
import uvicorn
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from fastapi import FastAPI
from prometheus_client import REGISTRY

from models.online import (
    AffinityModel,
    ConversionModel,
    OnlineExample,
    PrequentialEvaluator,
)
from schemas.catalog import PromotionRecord
from schemas.events import Event, EventType
from schemas.features import FeatureKeys
from services.api.server import build_app
from services.api.sessions import SessionFollower, SharedSessionIndex
from services.api.settings import ApiSettings
from services.api.signals import CheckpointSignals
from services.common.kafka import (
    TopicSpec,
    consumer_config,
    create_topics,
    producer_config,
)
from services.common.redis_features import EventPosition, FeatureStore
from services.common.settings import KafkaSettings, RedisSettings, TopicSettings
from services.infra import find_free_port
from services.learner.checkpoints import save_evaluators
from services.scorer.session_knn import session_key
from tests.topics import make_topics

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
PRODUCTS = "/v1/users/{user_id}/slates/products"


def _click(user_id: str, item_id: str, seconds: int, session_id: str) -> Event:
    return Event(
        event_id=f"{user_id}-{item_id}-{seconds}",
        event_type=EventType.CLICK,
        user_id=user_id,
        item_id=item_id,
        event_time=START + timedelta(seconds=seconds),
        session_id=session_id,
    )


# Ann viewed a kettle, then a teapot. Finn views the kettle later. Only Finn's
# click reaches Redis, so nothing there links the kettle to the teapot: only
# the session index, fed from the topic, can propose the teapot to Finn.
ANN = [
    _click("ann", "kettle", 0, "ann-visit"),
    _click("ann", "teapot", 10, "ann-visit"),
]
FINN = _click("finn", "kettle", 20, "finn-visit")


@pytest.fixture
def topics(kafka_settings: KafkaSettings) -> TopicSettings:
    return make_topics(kafka_settings, partitions=2)


@pytest.fixture
def settings(
    kafka_settings: KafkaSettings, redis_settings: RedisSettings, topics: TopicSettings
) -> ApiSettings:
    return ApiSettings(kafka=kafka_settings, redis=redis_settings, topics=topics)


@pytest.fixture
def make_follower(
    settings: ApiSettings,
) -> Iterator[Callable[[], SessionFollower]]:
    followers: list[SessionFollower] = []

    def make() -> SessionFollower:
        index = SharedSessionIndex(100, 10, 10)
        follower = SessionFollower(
            index, settings.kafka, settings.topics.events, warmup_events=100
        )
        followers.append(follower)
        follower.start()
        return follower

    yield make
    for follower in followers:
        follower.stop()


def _publish(kafka: KafkaSettings, topic: str, values: list[tuple[str, bytes]]) -> None:
    producer = Producer(producer_config(kafka))
    for key, value in values:
        producer.produce(topic, value, key.encode())
    assert producer.flush(15) == 0


def _as_messages(events: list[Event]) -> list[tuple[str, bytes]]:
    return [(event.user_id, event.model_dump_json().encode()) for event in events]


def _apply(client: redis.Redis, prefix: str, events: list[Event]) -> None:
    FeatureStore(client, prefix).apply_batch(
        events, [EventPosition(0, offset) for offset in range(len(events))]
    )


@contextlib.contextmanager
def _served(app: FastAPI) -> Iterator[httpx.Client]:
    """Serve ``app`` with uvicorn on a free loopback port and return a client."""
    port = find_free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        _wait_for(lambda: server.started, "uvicorn did not start")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10.0)


def _products(client: httpx.Client, user_id: str) -> list[tuple[str, str, float]]:
    response = client.get(PRODUCTS.format(user_id=user_id))
    assert response.status_code == 200, response.text
    return [
        (item["item_id"], item["source"], item["score"])
        for item in response.json()["items"]
    ]


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30.0
    while not condition():
        assert time.monotonic() < deadline, f"{what} within 30 s"
        time.sleep(0.05)


def _session_events(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "cartwheel_api_session_events_total", {"outcome": outcome}
    )
    return value or 0.0


def test_on_demand_slate_uses_warmup_sessions(
    settings: ApiSettings,
    redis_client: redis.Redis,
    make_follower: Callable[[], SessionFollower],
) -> None:
    _publish(settings.kafka, settings.topics.events, _as_messages([*ANN, FINN]))
    _apply(redis_client, settings.redis.key_prefix, [FINN])
    follower = make_follower()
    assert follower.wait_until_caught_up(30.0)
    app = build_app(settings, sessions=follower.index)

    with _served(app) as client:
        items = _products(client, "finn")

    assert [(item_id, source) for item_id, source, _ in items] == [
        ("teapot", "session_knn")
    ]


def test_on_demand_slate_uses_followed_sessions(
    settings: ApiSettings,
    redis_client: redis.Redis,
    make_follower: Callable[[], SessionFollower],
) -> None:
    follower = make_follower()
    assert follower.wait_until_caught_up(30.0)
    _publish(settings.kafka, settings.topics.events, _as_messages([*ANN, FINN]))
    _apply(redis_client, settings.redis.key_prefix, [FINN])
    finn_session = session_key("finn", "finn-visit")
    _wait_for(
        lambda: follower.index.session_items(finn_session) == ["kettle"],
        "the follower did not index finn's click",
    )
    app = build_app(settings, sessions=follower.index)

    with _served(app) as client:
        items = _products(client, "finn")

    assert [(item_id, source) for item_id, source, _ in items] == [
        ("teapot", "session_knn")
    ]


def test_on_demand_slate_lacks_session_knn_without_index(
    settings: ApiSettings, redis_client: redis.Redis
) -> None:
    _publish(settings.kafka, settings.topics.events, _as_messages([*ANN, FINN]))
    _apply(redis_client, settings.redis.key_prefix, [FINN])
    app = build_app(settings)

    with _served(app) as client:
        response = client.get(PRODUCTS.format(user_id="finn"))

    assert response.status_code == 200, response.text
    assert response.json()["items"] == []


def test_on_demand_new_user_slates_answer_alike(
    settings: ApiSettings, redis_client: redis.Redis
) -> None:
    # As after a replay: the promotion's window contains the events' times,
    # not the request time that a new user's trigger gets.
    _apply(redis_client, settings.redis.key_prefix, [*ANN, FINN])
    promotion = PromotionRecord(
        promotion_id="tea-week",
        title="Tea week",
        discount_percent=10.0,
        starts_at=START - timedelta(days=1),
        ends_at=START + timedelta(days=1),
        item_ids=["kettle", "teapot"],
        updated_at=START,
    )
    promotions_key = FeatureKeys(settings.redis.key_prefix).promotions()
    redis_client.hset(promotions_key, "tea-week", promotion.model_dump_json())
    app = build_app(settings)

    with _served(app) as client:
        answers = {
            surface: client.get(f"/v1/users/newcomer/slates/{surface}")
            for surface in ("products", "bundles", "reviews", "promotions")
        }
        finn = client.get("/v1/users/finn/slates/promotions")

    assert answers["products"].status_code == 200
    assert answers["products"].json()["items"]
    assert answers["bundles"].status_code == 404
    assert answers["reviews"].status_code == 404
    assert answers["promotions"].status_code == 200, answers["promotions"].text
    assert answers["promotions"].json()["items"] == []
    assert finn.status_code == 200, finn.text
    assert finn.json()["items"]


def test_session_follower_skips_invalid_events_without_dead_letters(
    settings: ApiSettings, make_follower: Callable[[], SessionFollower]
) -> None:
    skipped_before = _session_events("skipped")
    indexed_before = _session_events("indexed")
    _publish(
        settings.kafka,
        settings.topics.events,
        [("ann", b"{not json"), ("ann", b'{"event_type": "hover"}')]
        + _as_messages(ANN),
    )

    follower = make_follower()

    assert follower.wait_until_caught_up(30.0)
    assert _session_events("skipped") - skipped_before == 2
    assert _session_events("indexed") - indexed_before == 2
    assert follower.index.session_items(session_key("ann", "ann-visit")) == [
        "kettle",
        "teapot",
    ]
    assert _count_messages(settings.kafka, settings.topics.dead_letters, 2) == 0


def test_session_follower_leaves_no_consumer_group(
    settings: ApiSettings, make_follower: Callable[[], SessionFollower]
) -> None:
    _publish(settings.kafka, settings.topics.events, _as_messages(ANN))
    follower = make_follower()
    assert follower.wait_until_caught_up(30.0)

    follower.stop()

    admin = AdminClient(settings.kafka.client_config())
    listed = admin.list_consumer_groups(request_timeout=10.0).result()
    names = [group.group_id for group in listed.valid]
    assert not [name for name in names if name.startswith("cartwheel-api-sessions")]


def test_session_follower_waits_for_missing_topic(
    kafka_settings: KafkaSettings,
    unique_name: Callable[[str], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = unique_name("events")
    index = SharedSessionIndex(100, 10, 10)
    follower = SessionFollower(index, kafka_settings, topic, warmup_events=100)
    ann_session = session_key("ann", "ann-visit")

    with caplog.at_level(logging.INFO):
        follower.start(wait_for_topic=True)
        try:
            running_while_missing = _follower_running(topic)
            create_topics(kafka_settings, [TopicSpec(topic, 2)])
            _publish(kafka_settings, topic, _as_messages(ANN))
            _wait_for(
                lambda: index.session_items(ann_session) == ["kettle", "teapot"],
                "the follower did not index ann's clicks once the topic existed",
            )
            running_after = _follower_running(topic)
        finally:
            follower.stop()

    assert running_while_missing == 0
    assert running_after == 1
    assert REGISTRY.get_sample_value("cartwheel_api_session_index_sessions") == 1
    messages = [record.getMessage() for record in caplog.records]
    assert sum("waits for the events topic" in m for m in messages) == 1
    assert (
        sum("session follower recovered, topic lookup succeeded" in m for m in messages)
        == 1
    )
    assert sum("session follower started" in m for m in messages) == 1


def _follower_running(topic: str) -> float | None:
    return REGISTRY.get_sample_value(
        "cartwheel_api_session_follower_running", {"topic": topic}
    )


def _count_messages(kafka: KafkaSettings, topic: str, partitions: int) -> int:
    """Return the number of records of ``topic``, read up to each partition's end."""
    config = consumer_config(kafka, f"counter-{uuid.uuid4().hex[:8]}")
    config["enable.partition.eof"] = True
    consumer = Consumer(config)
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    reading = set(range(partitions))
    count = 0
    deadline = time.monotonic() + 30.0
    try:
        while reading:
            assert time.monotonic() < deadline, f"{topic} not read to its end"
            for message in consumer.consume(100, timeout=0.5):
                error = message.error()
                if error is None:
                    count += 1
                elif error.code() == KafkaError._PARTITION_EOF:
                    reading.discard(message.partition() or 0)
    finally:
        consumer.close()
    return count


def _save_checkpoint(path: Path, user_id: str, item_id: str) -> None:
    """Write a learner checkpoint whose affinity model learned one pair."""
    evaluators = {
        task: PrequentialEvaluator(ConversionModel(task))
        for task in ("cart_add", "purchase")
    }
    affinity = AffinityModel(user_buckets=64, item_buckets=64, pair_buckets=256)
    for _ in range(20):
        affinity.learn_one(OnlineExample(user_id, item_id), True)
    evaluators["affinity"] = PrequentialEvaluator(affinity)
    save_evaluators(path, evaluators, None)


def test_on_demand_slate_scores_change_when_checkpoint_appears(
    settings: ApiSettings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Ann's clicks reach Redis here, so co-visitation proposes the teapot.
    _apply(redis_client, settings.redis.key_prefix, [*ANN, FINN])
    signals = CheckpointSignals(tmp_path, None, reload_interval_seconds=0.05)
    signals.start()
    app = build_app(settings, signals=signals)
    try:
        with _served(app) as client:
            before = _products(client, "finn")
            _save_checkpoint(tmp_path / "learner.ckpt", "finn", "teapot")
            _wait_for(
                lambda: signals.checkpoint_path is not None,
                "the API did not load the new checkpoint",
            )
            after = _products(client, "finn")
    finally:
        signals.stop()

    assert [item_id for item_id, _, _ in before] == ["teapot"]
    assert [item_id for item_id, _, _ in after] == ["teapot"]
    assert after[0][2] != before[0][2]
