"""The catalog consumer stops while its offset commit waits on a frozen broker."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, Producer

from schemas.catalog import ItemRecord
from services.common.kafka import TopicSpec, create_topics, producer_config
from services.common.settings import KafkaSettings, RedisSettings, TopicSettings
from services.features.catalog import CatalogWriter
from services.features.consumer import CatalogConsumer, catalog_consumer_config
from services.features.marker import CatalogMarker
from services.features.settings import CatalogSettings
from services.infra import LocalServer, find_free_port
from services.infra.processes import start_broker

pytestmark = pytest.mark.integration


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalServer]:
    """A broker of this test's own, which the test may freeze with SIGSTOP."""
    server = start_broker(tmp_path / "broker", find_free_port())
    yield server
    pid = server.pid()
    if pid is not None:
        os.kill(pid, signal.SIGCONT)
    server.stop()


class FreezingWriter(CatalogWriter):
    """Stores records, then freezes the broker before the batch's commit."""

    def __init__(self, client: redis.Redis, key_prefix: str, broker_pid: int) -> None:
        super().__init__(client, key_prefix)
        self.broker_pid = broker_pid
        self.is_frozen = threading.Event()

    def apply(self, key: bytes | str | None, value: bytes | str | None) -> None:
        super().apply(key, value)
        os.kill(self.broker_pid, signal.SIGSTOP)
        self.is_frozen.set()


def test_stop_gives_up_commit_on_frozen_broker(
    own_broker: LocalServer,
    redis_client: redis.Redis,
    redis_settings: RedisSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kafka = KafkaSettings(bootstrap=own_broker.address)
    topics = TopicSettings(catalog="catalog", dead_letters="dlq", partitions=1)
    create_topics(kafka, [TopicSpec("catalog", 1), TopicSpec("dlq", 1)])
    settings = CatalogSettings(
        kafka=kafka, redis=redis_settings, topics=topics, poll_timeout_seconds=0.2
    )
    record = ItemRecord(
        item_id="i1", price=9.5, stock=3, updated_at=datetime(2019, 10, 1, tzinfo=UTC)
    )
    producer = Producer(producer_config(kafka, is_polled_steadily=True))
    producer.produce("catalog", key=b"item:i1", value=record.model_dump_json())
    producer.flush(10)
    pid = own_broker.pid()
    assert pid is not None
    prefix = redis_settings.key_prefix
    writer = FreezingWriter(redis_client, prefix, pid)
    consumer = CatalogConsumer(
        settings,
        Consumer(catalog_consumer_config(settings)),
        producer,
        writer,
        CatalogMarker(redis_client, prefix, topics.catalog, settings.group_id),
    )
    thread = threading.Thread(target=consumer.run, daemon=True)

    consumer_logger = "services.features.consumer"
    with caplog.at_level(logging.WARNING, logger=consumer_logger):
        thread.start()
        assert writer.is_frozen.wait(60), "the record was never consumed"
        consumer.stop()
        # Before the stop gave up, librdkafka's commit waited for as long as
        # the broker stayed frozen, and closing the consumer did too.
        thread.join(60)

    assert not thread.is_alive()
    lines = [r.getMessage() for r in caplog.records if r.name == consumer_logger]
    assert lines == [
        "catalog batch not committed on stop error=offsets not committed: the "
        f"service is stopping and the broker at {kafka.bootstrap} did not respond "
        "to the commit in time"
    ]
