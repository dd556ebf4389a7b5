"""Catalog writer and consumer against a real redis-server and broker."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, Producer

from schemas.catalog import ItemRecord, PromotionRecord, ReviewRecord
from schemas.features import FeatureKeys
from services.common.deadletters import DEAD_LETTERS
from services.common.kafka import consumer_config, producer_config
from services.common.redis_features import FeatureStore
from services.common.settings import KafkaSettings, RedisSettings, TopicSettings
from services.features import metrics
from services.features.catalog import CatalogWriter
from services.features.consumer import CatalogConsumer, catalog_consumer_config
from services.features.errors import CatalogKeyError, CatalogRecordError
from services.features.marker import CatalogMarker, PartitionEntry, PartitionState
from services.features.settings import CatalogSettings
from services.infra import find_free_port, start_redis

pytestmark = pytest.mark.integration

START = datetime(2019, 10, 1, tzinfo=UTC)


@pytest.fixture
def writer(redis_client: redis.Redis, redis_settings: RedisSettings) -> CatalogWriter:
    return CatalogWriter(redis_client, redis_settings.key_prefix)


@pytest.fixture
def store(redis_client: redis.Redis, redis_settings: RedisSettings) -> FeatureStore:
    return FeatureStore(redis_client, redis_settings.key_prefix)


def item(item_id: str = "a", **fields: Any) -> ItemRecord:
    return ItemRecord(item_id=item_id, updated_at=START, **fields)


def promotion(promotion_id: str, starts: float, ends: float) -> PromotionRecord:
    return PromotionRecord(
        promotion_id=promotion_id,
        title=f"promotion {promotion_id}",
        discount_percent=10.0,
        starts_at=START + timedelta(hours=starts),
        ends_at=START + timedelta(hours=ends),
        updated_at=START,
    )


def review(review_id: str, item_id: str, rating: int, votes: int = 0) -> ReviewRecord:
    return ReviewRecord(
        review_id=review_id,
        item_id=item_id,
        rating=rating,
        helpful_votes=votes,
        created_at=START,
        updated_at=START,
    )


def test_item_update_replaces_attributes(
    writer: CatalogWriter, store: FeatureStore
) -> None:
    writer.write(item(category_id="c1", brand="b1", price=5.0, stock=3))

    writer.write(item(category_id="c2", price=6.0))
    attributes = store.item_attributes(["a"])["a"]

    assert attributes.category_id == "c2"
    assert attributes.brand is None
    assert attributes.price == 6.0
    assert attributes.stock is None


def test_item_tombstone_deletes_item(
    writer: CatalogWriter, store: FeatureStore
) -> None:
    writer.write(item(category_id="c1"))

    writer.apply(b"item:a", None)

    assert store.item_attributes(["a"])["a"].category_id is None


def test_promotions_are_read_by_validity_window(
    writer: CatalogWriter, store: FeatureStore
) -> None:
    writer.write(promotion("p1", 0, 10))
    writer.write(promotion("p2", 5, 20))
    writer.apply(b"promotion:p3", promotion("p3", 0, 30).model_dump_json())

    writer.apply(b"promotion:p3", None)
    at = (START + timedelta(hours=12)).timestamp()

    assert [p.promotion_id for p in store.promotions_active_at(at)] == ["p2"]
    assert len(store.promotions_active_at(START.timestamp() + 6 * 3600)) == 2


def test_promotions_live_until_latest_end(
    writer: CatalogWriter, redis_client: redis.Redis
) -> None:
    now = datetime.now(UTC)
    running = PromotionRecord(
        promotion_id="long",
        title="a season",
        discount_percent=5.0,
        starts_at=now,
        ends_at=now + timedelta(days=90),
        updated_at=now,
    )
    writer.write(running)
    writer.write(promotion("short", 0, 1))

    remaining = redis_client.ttl(writer.keys.promotions())

    assert remaining > 89 * 86_400
    assert remaining > writer.ttl_seconds


def test_reviews_are_listed_and_summarised(
    writer: CatalogWriter, store: FeatureStore
) -> None:
    writer.write(item(price=1.0))
    writer.write(review("r1", "a", 5, votes=1))
    writer.write(review("r2", "a", 2, votes=7))
    writer.write(review("r3", "a", 3))

    writer.apply(b"review:r3", None)
    features = store.read("u", ["a"], at=START.timestamp()).items["a"]

    assert [r.review_id for r in store.reviews("a")] == ["r2", "r1"]
    assert features["item_review_count"] == 2.0
    assert features["item_rating_mean"] == 3.5


def test_review_moved_to_other_item_leaves_first_item(
    writer: CatalogWriter, store: FeatureStore
) -> None:
    writer.write(review("r1", "a", 4))

    writer.write(review("r1", "b", 4))

    assert store.reviews("a") == []
    assert [r.review_id for r in store.reviews("b")] == ["r1"]


def test_invalid_catalog_key_is_rejected(writer: CatalogWriter) -> None:
    with pytest.raises(CatalogKeyError, match="'order:1'"):
        writer.apply(b"order:1", b"{}")


def test_record_of_other_kind_than_key_is_rejected(writer: CatalogWriter) -> None:
    with pytest.raises(CatalogRecordError, match="record_type is 'item'"):
        writer.apply(b"promotion:a", item().model_dump_json())


def test_record_under_another_ids_key_is_rejected(writer: CatalogWriter) -> None:
    with pytest.raises(CatalogKeyError, match="contains the record of 'item:b'"):
        writer.apply(b"item:a", item("b").model_dump_json())


def test_catalog_consumer_dead_letters_bad_records(
    kafka_settings: KafkaSettings,
    redis_client: redis.Redis,
    redis_settings: RedisSettings,
    make_topic: Callable[..., str],
    unique_name: Callable[[str], str],
) -> None:
    topics = TopicSettings(
        catalog=make_topic("catalog", 1, is_compacted=True),
        dead_letters=make_topic("dlq", 1),
    )
    settings = CatalogSettings(
        kafka=kafka_settings,
        redis=redis_settings,
        topics=topics,
        group_id=unique_name("catalog"),
        poll_timeout_seconds=0.2,
    )
    producer = Producer(producer_config(kafka_settings))
    producer.produce(
        topics.catalog, key=b"item:a", value=item(brand="x").model_dump_json()
    )
    producer.produce(topics.catalog, key=b"item:b", value=b"{not json")
    producer.produce(topics.catalog, key=b"weird", value=b"{}")
    # The item schema makes record_type optional: a record without it is an
    # item, under an item key.
    untyped = {"item_id": "z1", "updated_at": "2019-10-01T00:00:00Z", "price": 5.0}
    producer.produce(topics.catalog, key=b"item:z1", value=json.dumps(untyped))
    for key, change in (
        (b"item:c", {"price": "abc"}),
        (b"item:d", {"record_type": "x"}),
    ):
        value = {**untyped, "item_id": key.decode()[5:], **change}
        producer.produce(topics.catalog, key=key, value=json.dumps(value))
    backwards = promotion("p", 0, 1).model_dump(mode="json")
    backwards["ends_at"] = backwards["starts_at"]
    producer.produce(
        topics.catalog, key=b"promotion:p", value=json.dumps(backwards).encode()
    )
    producer.flush(10)
    consumer = catalog_consumer(settings, redis_client, producer)
    consumer.subscribe()

    deadline = time.monotonic() + 30
    handled = 0
    while handled < 7 and time.monotonic() < deadline:
        handled += consumer.poll_once()
    letters = read_all(kafka_settings, topics.dead_letters, 5)

    store = FeatureStore(redis_client, redis_settings.key_prefix)
    attributes = store.item_attributes(["a", "z1"])
    messages = {letter["reason"]: letter["message"] for letter in letters}
    assert attributes["a"].brand == "x"
    assert attributes["z1"].price == 5.0
    assert sorted(messages) == [
        "invalid_id",
        "invalid_json",
        "out_of_range",
        "unknown_record_type",
        "wrong_type",
    ]
    assert messages["wrong_type"] == (
        "field 'price' has value 'abc'; expected a finite number from 0 to 1e9, or null"
    )
    consumer._consumer.close()
    producer.close()


def read_all(kafka: KafkaSettings, topic: str, count: int) -> list[dict[str, Any]]:
    reader = Consumer(consumer_config(kafka, f"reader-{time.monotonic_ns()}"))
    reader.subscribe([topic])
    values: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while len(values) < count and time.monotonic() < deadline:
        for message in reader.consume(100, 0.5):
            if message.error() is None:
                values.append(json.loads(message.value()))
    reader.close()
    return values


def catalog_consumer(
    settings: CatalogSettings, client: redis.Redis, producer: Producer
) -> CatalogConsumer:
    prefix = settings.redis.key_prefix
    return CatalogConsumer(
        settings,
        Consumer(catalog_consumer_config(settings)),
        producer,
        CatalogWriter(client, prefix),
        CatalogMarker(client, prefix, settings.topics.catalog, settings.group_id),
    )


@pytest.fixture
def flushable_redis_url(tmp_path: Path) -> Iterator[str]:
    """The URL of a redis-server of this test's own, which it may FLUSHALL."""
    server = start_redis(tmp_path, find_free_port())
    yield f"redis://{server.address}/0"
    server.stop()


@pytest.fixture
def flushable_redis(flushable_redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(flushable_redis_url)
    yield client
    client.close()


@pytest.fixture
def make_reload_settings(
    kafka_settings: KafkaSettings,
    flushable_redis_url: str,
    make_topic: Callable[..., str],
    unique_name: Callable[[str], str],
) -> Callable[[int], CatalogSettings]:
    """Return a factory of settings on a fresh catalog topic and consumer group."""

    def make(partitions: int) -> CatalogSettings:
        topics = TopicSettings(
            catalog=make_topic("catalog", partitions, is_compacted=True),
            dead_letters=make_topic("dlq", 1),
            partitions=partitions,
        )
        return CatalogSettings(
            kafka=kafka_settings,
            redis=RedisSettings(url=flushable_redis_url, key_prefix="cw"),
            topics=topics,
            group_id=unique_name("catalog"),
            poll_timeout_seconds=0.2,
            catalog_reload_check_seconds=0.2,
        )

    return make


@pytest.fixture
def make_catalog_consumer(
    flushable_redis: redis.Redis,
) -> Iterator[Callable[[CatalogSettings], CatalogConsumer]]:
    """Return a factory of catalog consumers that are closed when the test ends.

    Each consumer stays alive through its rebalance callbacks, so its clients
    would otherwise outlive the test and the broker.
    """
    made: list[tuple[CatalogConsumer, Producer]] = []

    def make(settings: CatalogSettings) -> CatalogConsumer:
        producer = Producer(producer_config(settings.kafka))
        made.append((catalog_consumer(settings, flushable_redis, producer), producer))
        return made[-1][0]

    yield make
    for consumer, producer in made:
        consumer._consumer.close()
        producer.close()


@pytest.fixture
def run_in_thread(
    make_catalog_consumer: Callable[[CatalogSettings], CatalogConsumer],
) -> Iterator[Callable[[CatalogConsumer], None]]:
    """Return a function that runs a consumer in a thread until the test ends.

    It depends on ``make_catalog_consumer`` so that the threads stop before
    that fixture closes the consumers.
    """
    running: list[tuple[CatalogConsumer, threading.Thread]] = []

    def start(consumer: CatalogConsumer) -> None:
        thread = threading.Thread(target=consumer.run, daemon=True)
        thread.start()
        running.append((consumer, thread))

    yield start
    for consumer, _ in running:
        consumer.stop()
    for _, thread in running:
        thread.join(30)


def publish_catalog(settings: CatalogSettings) -> None:
    """Publish items, promotions, reviews, an update and a tombstone."""
    producer = Producer(producer_config(settings.kafka))
    records: list[ItemRecord | PromotionRecord | ReviewRecord] = [
        item(f"i{n}", category_id=f"c{n % 3}", price=float(n), stock=n)
        for n in range(24)
    ]
    records += [promotion(f"p{n}", 0, 100 + n) for n in range(3)]
    records += [review(f"r{n}", f"i{n % 4}", 1 + n % 5) for n in range(8)]
    records.append(item("i0", brand="renamed", price=2.5))
    for record in records:
        key = f"{record.record_type}:{record_id(record)}"
        producer.produce(
            settings.topics.catalog, key=key, value=record.model_dump_json()
        )
    producer.produce(settings.topics.catalog, key=b"review:r7", value=None)
    producer.flush(10)


def record_id(record: ItemRecord | PromotionRecord | ReviewRecord) -> str:
    if isinstance(record, ItemRecord):
        return record.item_id
    if isinstance(record, PromotionRecord):
        return record.promotion_id
    return record.review_id


def catalog_in_redis(client: redis.Redis, settings: CatalogSettings) -> dict[str, Any]:
    """Return every key under the prefix but the marker, with its fields."""
    marker_key = FeatureKeys(settings.redis.key_prefix).catalog_loaded()
    return {
        key: client.hgetall(key)
        for key in client.scan_iter(f"{settings.redis.key_prefix}:*")
        if key.decode() != marker_key
    }


def loaded_partitions(client: redis.Redis, settings: CatalogSettings) -> set[int]:
    prefix = settings.redis.key_prefix
    marker = CatalogMarker(client, prefix, settings.topics.catalog, settings.group_id)
    entries = marker.entries(range(settings.topics.partitions))
    return {p for p, entry in entries.items() if entry.state is PartitionState.LOADED}


def wait_for(
    is_done: Callable[[], bool],
    poll: Callable[[], object] = lambda: time.sleep(0.05),
    seconds: float = 60,
) -> None:
    """Call ``poll`` until ``is_done`` holds; fail after a generous deadline."""
    deadline = time.monotonic() + seconds
    while not is_done():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        poll()


def load(
    consumer: CatalogConsumer, client: redis.Redis, settings: CatalogSettings
) -> dict[str, Any]:
    """Poll until every partition is loaded; return the catalog in Redis."""
    every_partition = set(range(settings.topics.partitions))
    wait_for(
        lambda: loaded_partitions(client, settings) == every_partition,
        consumer.poll_once,
    )
    return catalog_in_redis(client, settings)


def subscribe_and_load(
    consumer: CatalogConsumer, client: redis.Redis, settings: CatalogSettings
) -> dict[str, Any]:
    """Join the group, then poll until every partition is loaded."""
    consumer.subscribe()
    return load(consumer, client, settings)


def flush_and_reload(
    consumer: CatalogConsumer,
    client: redis.Redis,
    settings: CatalogSettings,
    loaded: dict[str, Any],
) -> dict[str, Any]:
    """FLUSHALL, poll until ``loaded`` is back, then until every partition is."""
    client.flushall()
    wait_for(lambda: catalog_in_redis(client, settings) == loaded, consumer.poll_once)
    return load(consumer, client, settings)


def test_catalog_consumer_restores_catalog_after_flushall_while_running(
    make_reload_settings: Callable[[int], CatalogSettings],
    make_catalog_consumer: Callable[[CatalogSettings], CatalogConsumer],
    flushable_redis: redis.Redis,
) -> None:
    settings = make_reload_settings(3)
    publish_catalog(settings)
    consumer = make_catalog_consumer(settings)
    loaded = subscribe_and_load(consumer, flushable_redis, settings)
    reloads_before = metrics.CATALOG_RELOADS._value.get()

    restored = flush_and_reload(consumer, flushable_redis, settings, loaded)

    assert len(loaded) == 24 + 1 + 4 + 1
    assert restored == loaded
    assert metrics.CATALOG_RELOADS._value.get() == reloads_before + 1


def test_catalog_consumer_restores_catalog_after_flushall_and_restart(
    make_reload_settings: Callable[[int], CatalogSettings],
    make_catalog_consumer: Callable[[CatalogSettings], CatalogConsumer],
    flushable_redis: redis.Redis,
) -> None:
    settings = make_reload_settings(3)
    publish_catalog(settings)
    first = make_catalog_consumer(settings)
    loaded = subscribe_and_load(first, flushable_redis, settings)
    first._consumer.close()

    flushable_redis.flushall()
    second = make_catalog_consumer(settings)
    restored = subscribe_and_load(second, flushable_redis, settings)

    assert restored == loaded


def test_catalog_consumer_marks_empty_topic_loaded_once(
    make_reload_settings: Callable[[int], CatalogSettings],
    make_catalog_consumer: Callable[[CatalogSettings], CatalogConsumer],
    flushable_redis: redis.Redis,
) -> None:
    settings = make_reload_settings(2)
    consumer = make_catalog_consumer(settings)
    subscribe_and_load(consumer, flushable_redis, settings)
    reloads_before = metrics.CATALOG_RELOADS._value.get()

    # Each poll waits the poll timeout, so these span several checks.
    for _ in range(5):
        consumer.poll_once()

    assert loaded_partitions(flushable_redis, settings) == {0, 1}
    assert metrics.CATALOG_RELOADS._value.get() == reloads_before


def test_catalog_consumers_in_one_group_restore_flushed_catalog(
    make_reload_settings: Callable[[int], CatalogSettings],
    make_catalog_consumer: Callable[[CatalogSettings], CatalogConsumer],
    run_in_thread: Callable[[CatalogConsumer], None],
    flushable_redis: redis.Redis,
) -> None:
    settings = make_reload_settings(4)
    publish_catalog(settings)
    consumers = [make_catalog_consumer(settings) for _ in range(2)]
    for consumer in consumers:
        run_in_thread(consumer)
    wait_for(lambda: all(c._consumer.assignment() for c in consumers))
    wait_for(lambda: loaded_partitions(flushable_redis, settings) == {0, 1, 2, 3})
    loaded = catalog_in_redis(flushable_redis, settings)

    flushable_redis.flushall()
    wait_for(lambda: catalog_in_redis(flushable_redis, settings) == loaded)
    wait_for(lambda: loaded_partitions(flushable_redis, settings) == {0, 1, 2, 3})

    assert catalog_in_redis(flushable_redis, settings) == loaded


def test_marker_loading_entry_keeps_committed_offset(
    redis_client: redis.Redis, redis_settings: RedisSettings
) -> None:
    marker = CatalogMarker(redis_client, redis_settings.key_prefix, "catalog", "g")

    marker.start({0: 12, 1: None})

    assert marker.entries([0, 1, 2]) == {
        0: PartitionEntry(PartitionState.LOADING, 12),
        1: PartitionEntry(PartitionState.LOADING, None),
    }


def test_marker_loaded_entry_drops_committed_offset(
    redis_client: redis.Redis, redis_settings: RedisSettings
) -> None:
    marker = CatalogMarker(redis_client, redis_settings.key_prefix, "catalog", "g")
    marker.start({0: 12})

    marker.finish({0})

    assert marker.entries([0]) == {0: PartitionEntry(PartitionState.LOADED, None)}


def test_marker_reads_entry_without_committed_offset(
    redis_client: redis.Redis, redis_settings: RedisSettings
) -> None:
    marker = CatalogMarker(redis_client, redis_settings.key_prefix, "catalog", "g")
    entry = {"state": "loading", "consumer_group": "g", "set_at": "2019-10-01"}
    redis_client.hset(marker.key, "catalog:0", json.dumps(entry))

    assert marker.entries([0]) == {0: PartitionEntry(PartitionState.LOADING, None)}


def publish_invalid(settings: CatalogSettings, keys: list[bytes]) -> None:
    """Publish one message that is not valid JSON under each key."""
    producer = Producer(producer_config(settings.kafka))
    for key in keys:
        producer.produce(settings.topics.catalog, key=key, value=b"{not json")
    producer.flush(10)


def catalog_dead_letters() -> float:
    """Return the dead letters counted for the catalog, all reasons together."""
    return sum(
        sample.value
        for metric in DEAD_LETTERS.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels["service"] == "catalog"
    )


def rejected_again() -> float:
    return sum(
        metrics.CATALOG_RECORDS.labels(kind, "rejected_again")._value.get()
        for kind in ("item", "promotion", "review")
    )


def test_reread_after_flushall_adds_no_dead_letters(
    make_reload_settings: Callable[[int], CatalogSettings],
    make_catalog_consumer: Callable[[CatalogSettings], CatalogConsumer],
    flushable_redis: redis.Redis,
) -> None:
    settings = make_reload_settings(3)
    invalid = [f"item:bad{n}".encode() for n in range(6)]
    publish_catalog(settings)
    publish_invalid(settings, invalid)
    consumer = make_catalog_consumer(settings)
    loaded = subscribe_and_load(consumer, flushable_redis, settings)
    letters_before = catalog_dead_letters()
    again_before = rejected_again()

    flush_and_reload(consumer, flushable_redis, settings, loaded)
    # A record after the re-read is dead-lettered as usual. The dead-letter
    # topic keeps the order in which the consumer sent the letters, so a
    # letter sent twice by the re-read would come before this one.
    publish_invalid(settings, [b"item:late"])
    wait_for(lambda: catalog_dead_letters() > letters_before, consumer.poll_once)
    letters = read_all(settings.kafka, settings.topics.dead_letters, len(invalid) + 1)

    assert catalog_dead_letters() == letters_before + 1
    assert rejected_again() == again_before + len(invalid)
    assert sorted(letter["raw_key_base64"] for letter in letters) == sorted(
        base64.b64encode(key).decode() for key in [*invalid, b"item:late"]
    )
    assert letters[-1]["raw_key_base64"] == base64.b64encode(b"item:late").decode()


def test_first_start_on_empty_redis_counts_no_reload(
    make_reload_settings: Callable[[int], CatalogSettings],
    make_catalog_consumer: Callable[[CatalogSettings], CatalogConsumer],
    flushable_redis: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_reload_settings(3)
    publish_catalog(settings)
    consumer = make_catalog_consumer(settings)
    reloads_before = metrics.CATALOG_RELOADS._value.get()

    with caplog.at_level(logging.INFO, logger="services.features.consumer"):
        loaded = subscribe_and_load(consumer, flushable_redis, settings)

    assert len(loaded) == 24 + 1 + 4 + 1
    assert metrics.CATALOG_RELOADS._value.get() == reloads_before
    assert "reading the catalog for the first time" in caplog.text
    assert "redis has no catalog" not in caplog.text
