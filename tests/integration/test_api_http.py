"""The HTTP API served by uvicorn on a loopback port, against the real broker and Redis.

Every route in the OpenAPI document is called, and each response body is
validated against the schema that the document declares for its status code.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import redis
import uvicorn
from confluent_kafka import Consumer, Message, Producer

from schemas.catalog import ItemRecord
from schemas.deadletters import DeadLetter
from schemas.events import Event, EventType
from schemas.features import FeatureKeys
from schemas.recommendations import Slate, SlateItem, Surface
from schemas.validation import MAX_EVENT_BYTES
from services.api.app import create_app
from services.api.ondemand import OnDemandSlates
from services.api.settings import ApiSettings
from services.common.kafka import (
    consumer_config,
    create_topics,
    producer_config,
    standard_topics,
)
from services.common.redis_features import EventPosition, FeatureStore
from services.common.settings import KafkaSettings, RedisSettings, TopicSettings
from services.features.catalog import CatalogWriter
from services.infra import find_free_port, start_broker
from services.scorer.publisher import latest_slate_key
from services.scorer.session_knn import SessionIndex
from services.scorer.slates import SlateBuilder
from services.scorer.store import RedisCandidateStore
from tests.topics import make_topics

pytestmark = pytest.mark.integration

START = datetime(2019, 10, 1, 12, tzinfo=UTC)


class Api:
    """A running API and the means to check its responses."""

    def __init__(self, base_url: str, settings: ApiSettings) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=10.0)
        self.settings = settings
        self.document = self.client.get("/openapi.json").json()
        self.called: set[tuple[str, str]] = set()

    def call(self, method: str, route: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call ``path`` (an instance of ``route``) and validate the response."""
        response = self.client.request(method, path, **kwargs)
        self.called.add((method.lower(), route))
        self.check(method, route, response)
        return response

    def check(self, method: str, route: str, response: httpx.Response) -> None:
        operation = self.document["paths"][route][method.lower()]
        declared = operation["responses"]
        assert str(response.status_code) in declared, (
            f"{method} {route} returned {response.status_code}, "
            f"documented {sorted(declared)}"
        )
        content = declared[str(response.status_code)].get("content", {})
        if method == "HEAD":
            assert content == {}
            assert response.content == b""
        elif "application/json" in content:
            schema = {
                **content["application/json"]["schema"],
                "components": self.document["components"],
            }
            jsonschema.Draft202012Validator(schema).validate(response.json())
        else:
            assert response.headers["content-type"].startswith("text/plain")


def _serve(app: Any, port: int) -> Iterator[str]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10.0
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10.0)


@pytest.fixture
def topics(kafka_settings: KafkaSettings) -> TopicSettings:
    return make_topics(kafka_settings, partitions=1)


@pytest.fixture
def make_api(
    kafka_settings: KafkaSettings,
    redis_settings: RedisSettings,
    redis_client: redis.Redis,
    topics: TopicSettings,
) -> Iterator[Callable[..., Api]]:
    servers: list[Iterator[str]] = []
    producers: list[Producer] = []

    def make(**overrides: Any) -> Api:
        settings = ApiSettings(
            kafka=kafka_settings,
            redis=redis_settings,
            topics=overrides.pop("topics", topics),
            **overrides,
        )
        producer = Producer(producer_config(kafka_settings, linger_ms=0))
        producers.append(producer)
        store = RedisCandidateStore(
            FeatureStore(redis_client, redis_settings.key_prefix)
        )
        builder = SlateBuilder(store, SessionIndex(10, 10, 10), settings.scorer)
        app = create_app(
            settings,
            redis_client=redis_client,
            producer=producer,
            on_demand=OnDemandSlates(builder, store, settings.scorer),
        )
        server = _serve(app, find_free_port())
        servers.append(server)
        return Api(next(server), settings)

    yield make
    for server in servers:
        next(server, None)
    for producer in producers:
        producer.flush(5)
        producer.close()


def _read_message(kafka: KafkaSettings, topic: str) -> Message:
    consumer = Consumer(consumer_config(kafka, f"reader-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([topic])
    deadline = time.monotonic() + 30.0
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                return message
    finally:
        consumer.close()
    raise AssertionError(f"no message on {topic!r} within 30 s")


def _read_one(kafka: KafkaSettings, topic: str) -> bytes:
    return _read_message(kafka, topic).value() or b""


def _event(**overrides: Any) -> Event:
    fields: dict[str, Any] = {
        "event_id": f"e-{uuid.uuid4().hex[:8]}",
        "event_type": EventType.CLICK,
        "user_id": "u1",
        "item_id": "i1",
        "event_time": START,
        "session_id": "s1",
    }
    fields.update(overrides)
    return Event(**fields)


def _store_slate(
    client: redis.Redis, prefix: str, user_id: str, item_ids: Sequence[str] = ("i9",)
) -> Slate:
    """Store a products slate of the items, in order, as the hot path would."""
    slate = Slate(
        recommendation_id=f"r-{user_id}",
        surface=Surface.PRODUCTS,
        user_id=user_id,
        trigger_event_id="e0",
        items=[
            SlateItem(
                item_id=item_id, rank=rank, score=1 / (rank + 1), source="trending"
            )
            for rank, item_id in enumerate(item_ids, start=1)
        ],
        model_version="heuristic-v1",
        generated_at=START,
        latency_ms=3.0,
    )
    client.set(latest_slate_key(prefix, user_id, "products"), slate.model_dump_json())
    return slate


def test_api_serves_every_documented_route(
    make_api: Callable[..., Api],
    redis_client: redis.Redis,
    redis_settings: RedisSettings,
    kafka_settings: KafkaSettings,
    topics: TopicSettings,
) -> None:
    prefix = redis_settings.key_prefix
    stored = _store_slate(redis_client, prefix, "stored-user")
    history = [
        _event(user_id="other", item_id="kettle"),
        _event(user_id="other", item_id="teapot", event_time=START.replace(minute=1)),
        _event(user_id="fresh", item_id="kettle", event_time=START.replace(minute=2)),
    ]
    FeatureStore(redis_client, prefix).apply_batch(
        history, [EventPosition(0, offset) for offset in range(len(history))]
    )
    api = make_api()
    slates = "/v1/users/{user_id}/slates/{surface}"

    stored_answer = api.call("GET", slates, "/v1/users/stored-user/slates/products")
    computed = api.call("GET", slates, "/v1/users/fresh/slates/products")
    missing = api.call("GET", slates, "/v1/users/fresh/slates/bundles")
    wrong_surface = api.call("GET", slates, "/v1/users/fresh/slates/banners")
    good = _event(user_id="poster")
    accepted = api.call(
        "POST", "/v1/events", "/v1/events", content=good.model_dump_json()
    )
    rejected = api.call(
        "POST", "/v1/events", "/v1/events", content=b'{"event_type": "hover"}'
    )
    health = api.call("GET", "/healthz", "/healthz")
    health_head = api.call("HEAD", "/healthz", "/healthz")
    ready = api.call("GET", "/readyz", "/readyz")
    ready_head = api.call("HEAD", "/readyz", "/readyz")
    metrics = api.call("GET", "/metrics", "/metrics")

    assert stored_answer.status_code == 200
    assert Slate.model_validate_json(stored_answer.content) == stored
    assert computed.status_code == 200
    assert [item["item_id"] for item in computed.json()["items"]] == ["teapot"]
    assert missing.status_code == 404
    assert wrong_surface.status_code == 422
    assert accepted.status_code == 202
    assert Event.model_validate_json(_read_one(kafka_settings, topics.events)) == good
    assert rejected.status_code == 422
    letter = DeadLetter.model_validate_json(
        _read_one(kafka_settings, topics.dead_letters)
    )
    assert letter.reason == rejected.json()["reason"]
    assert letter.source_topic == "http"
    assert health.json() == {"status": "ok"}
    assert health_head.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready_head.status_code == 200
    assert "cartwheel_api_events_total" in metrics.text
    documented = {
        (method, route)
        for route, operations in api.document["paths"].items()
        for method in operations
    }
    assert documented == api.called


def test_api_is_not_ready_when_events_topic_is_missing(
    make_api: Callable[..., Api], topics: TopicSettings
) -> None:
    api = make_api(topics=topics.model_copy(update={"events": "missing-topic"}))

    answer = api.call("GET", "/readyz", "/readyz")
    head = api.call("HEAD", "/readyz", "/readyz")

    assert answer.status_code == 503
    assert "missing-topic" in answer.json()["kafka"]
    assert head.status_code == 503


@contextlib.contextmanager
def _api_on(
    kafka: KafkaSettings, redis_settings: RedisSettings, redis_client: redis.Redis
) -> Iterator[Api]:
    """Serve an API without on-demand slates on a broker the test owns.

    It waits 1 s for each delivery, and drops what its producer still holds
    when it stops, so that a broker the test froze or restarted is not waited
    for.
    """
    settings = ApiSettings(
        kafka=kafka,
        redis=redis_settings,
        topics=make_topics(kafka, partitions=1),
        is_on_demand_enabled=False,
        ingest_timeout_seconds=1.0,
    )
    producer = Producer(producer_config(kafka, linger_ms=0, is_polled_steadily=True))
    server = _serve(
        create_app(settings, redis_client=redis_client, producer=producer),
        find_free_port(),
    )
    try:
        yield Api(next(server), settings)
    finally:
        next(server, None)
        producer.purge()
        producer.flush(1.0)


def test_api_unready_after_broker_restart(
    tmp_path: Path, redis_settings: RedisSettings, redis_client: redis.Redis
) -> None:
    # The broker lists the topics again after a restart, but it forgot the
    # producer's sequence numbers and confirms none of its writes (L-77).
    port = find_free_port()
    broker = start_broker(tmp_path / "broker", port)
    kafka = KafkaSettings(bootstrap=broker.address)
    try:
        with _api_on(kafka, redis_settings, redis_client) as api:
            stored = api.call(
                "POST", "/v1/events", "/v1/events", content=_event().model_dump_json()
            )
            ready = api.call("GET", "/readyz", "/readyz")
            broker.stop()
            broker = start_broker(tmp_path / "broker", port)
            create_topics(kafka, standard_topics(api.settings.topics))

            unconfirmed = api.call(
                "POST", "/v1/events", "/v1/events", content=_event().model_dump_json()
            )
            unready = api.call("GET", "/readyz", "/readyz")
    finally:
        broker.stop()

    assert stored.status_code == 202
    assert ready.status_code == 200
    assert unconfirmed.status_code == 503
    assert unready.status_code == 503
    assert unready.json()["kafka"].startswith("the latest delivery to Kafka failed")
    assert unready.json()["redis"] == "ok"


def test_api_answers_422_to_invalid_event_on_frozen_broker(
    tmp_path: Path, redis_settings: RedisSettings, redis_client: redis.Redis
) -> None:
    broker = start_broker(tmp_path / "broker", find_free_port())
    pid = broker.pid()
    assert pid is not None
    try:
        with _api_on(
            KafkaSettings(bootstrap=broker.address), redis_settings, redis_client
        ) as api:
            stored = api.call(
                "POST", "/v1/events", "/v1/events", content=_event().model_dump_json()
            )
            os.kill(pid, signal.SIGSTOP)
            try:
                invalid = api.call(
                    "POST",
                    "/v1/events",
                    "/v1/events",
                    content=b'{"event_id": "dlqtest-1", "event_type": "clack"}',
                )
            finally:
                os.kill(pid, signal.SIGCONT)
    finally:
        broker.stop()

    assert stored.status_code == 202
    assert invalid.status_code == 422
    assert invalid.json()["reason"] == "unknown_event_type"
    assert invalid.json()["detail"] == (
        "the broker did not confirm the dead letter within 1 s, so it may or may "
        "not be stored; the API's producer keeps it queued and keeps trying to "
        "send it"
    )


def test_api_huge_body_dead_letters_prefix(
    make_api: Callable[..., Api], kafka_settings: KafkaSettings, topics: TopicSettings
) -> None:
    api = make_api()
    body = b'{"event_id": "' + b"x" * 2_000_000 + b'"}'

    answer = api.call("POST", "/v1/events", "/v1/events", content=body)

    assert answer.status_code == 413
    assert answer.json()["reason"] == "payload_too_large"
    letter = DeadLetter.model_validate_json(
        _read_one(kafka_settings, topics.dead_letters)
    )
    assert letter.reason == "payload_too_large"
    assert letter.raw_value_base64 is not None
    assert base64.b64decode(letter.raw_value_base64) == body[:MAX_EVENT_BYTES]
    assert f"{len(body)} bytes" in letter.message


def test_api_dead_letter_keyed_by_user_id(
    make_api: Callable[..., Api], kafka_settings: KafkaSettings, topics: TopicSettings
) -> None:
    api = make_api()
    body = {**_event(user_id="u-42").model_dump(mode="json"), "event_type": "hover"}

    answer = api.call("POST", "/v1/events", "/v1/events", json=body)

    assert answer.json()["reason"] == "unknown_event_type"
    message = _read_message(kafka_settings, topics.dead_letters)
    assert message.key() == b"u-42"
    letter = DeadLetter.model_validate_json(message.value() or b"")
    assert letter.reason == "unknown_event_type"
    assert letter.raw_key_base64 is None


def test_api_dead_letter_unkeyed_for_non_json(
    make_api: Callable[..., Api], kafka_settings: KafkaSettings, topics: TopicSettings
) -> None:
    api = make_api()

    answer = api.call(
        "POST", "/v1/events", "/v1/events", content=b'{"user_id": "u-42", '
    )

    assert answer.json()["reason"] == "invalid_json"
    message = _read_message(kafka_settings, topics.dead_letters)
    assert message.key() is None
    letter = DeadLetter.model_validate_json(message.value() or b"")
    assert letter.reason == "invalid_json"


def test_api_dead_letter_unkeyed_for_numeric_user_id(
    make_api: Callable[..., Api], kafka_settings: KafkaSettings, topics: TopicSettings
) -> None:
    api = make_api()
    body = {**_event().model_dump(mode="json"), "user_id": 42}

    answer = api.call("POST", "/v1/events", "/v1/events", json=body)

    assert answer.json()["reason"] == "wrong_type"
    message = _read_message(kafka_settings, topics.dead_letters)
    assert message.key() is None
    letter = DeadLetter.model_validate_json(message.value() or b"")
    assert letter.reason == "wrong_type"


def test_api_refuses_events_for_a_missing_topic(
    make_api: Callable[..., Api], topics: TopicSettings, kafka_settings: KafkaSettings
) -> None:
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    api = make_api(topics=topics.model_copy(update={"events": missing}))

    answer = api.call(
        "POST", "/v1/events", "/v1/events", content=_event().model_dump_json()
    )

    assert answer.status_code == 503
    assert "cartwheel topics create" in answer.json()["detail"]
    listing = Producer(producer_config(kafka_settings)).list_topics(timeout=10)
    assert missing not in listing.topics


def test_api_reads_any_valid_user_id(
    make_api: Callable[..., Api],
    redis_client: redis.Redis,
    redis_settings: RedisSettings,
) -> None:
    stored = _store_slate(redis_client, redis_settings.key_prefix, "shop/42")
    api = make_api()
    slates = "/v1/users/{user_id}/slates/{surface}"

    with_slash = api.call("GET", slates, "/v1/users/shop%2F42/slates/products")
    too_long = api.call("GET", slates, f"/v1/users/{'z' * 129}/slates/products")

    assert with_slash.status_code == 200
    assert Slate.model_validate_json(with_slash.content) == stored
    assert too_long.status_code == 422


def _served_items(api: Api, user_id: str) -> list[tuple[str, int]]:
    answer = api.call(
        "GET",
        "/v1/users/{user_id}/slates/{surface}",
        f"/v1/users/{user_id}/slates/products",
    )
    served = Slate.model_validate_json(answer.content)
    return [(item.item_id, item.rank) for item in served.items]


def test_api_drops_sold_out_slate_items(
    make_api: Callable[..., Api],
    redis_client: redis.Redis,
    redis_settings: RedisSettings,
) -> None:
    prefix = redis_settings.key_prefix
    _store_slate(redis_client, prefix, "u-stock", ["i7", "i8", "i9"])
    catalog = CatalogWriter(redis_client, prefix)
    catalog.write(ItemRecord(item_id="i8", stock=0, updated_at=START))
    catalog.write(ItemRecord(item_id="i9", stock=3, updated_at=START))
    api = make_api()

    served = _served_items(api, "u-stock")

    assert served == [("i7", 1), ("i9", 2)]


def test_api_keeps_item_of_invalid_stock(
    make_api: Callable[..., Api],
    redis_client: redis.Redis,
    redis_settings: RedisSettings,
) -> None:
    prefix = redis_settings.key_prefix
    # Items of their own, so that no other test reads the invalid stock.
    item_ids = ["i-bad-stock", "i-sold-out", "i-in-stock"]
    _store_slate(redis_client, prefix, "u-bad-stock", item_ids)
    catalog = CatalogWriter(redis_client, prefix)
    catalog.write(ItemRecord(item_id="i-sold-out", stock=0, updated_at=START))
    bad_stock = FeatureKeys(prefix).item_catalog("i-bad-stock")
    redis_client.hset(bad_stock, "stock", "abc")
    api = make_api()

    served = _served_items(api, "u-bad-stock")

    assert served == [("i-bad-stock", 1), ("i-in-stock", 2)]
