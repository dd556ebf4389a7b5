"""The catalog consumer: items, promotions and reviews into Redis.

Delivery guarantee: at-least-once. Offsets are committed synchronously after
the batch is stored in Redis and its dead letters are delivered. Writing a
record is idempotent (the record replaces the previous version of its entity),
so a replayed batch leaves the same state.

Ordering: the topic is keyed by entity key, so the versions of one entity are
applied in offset order and the newest one wins.

Malformed input: a message whose key or value is not a valid catalog record
goes to the dead-letter topic and is skipped. Its reason and message come
from the mapping that events use (:mod:`schemas.rejections`). A record
without ``record_type`` is of the kind that its key names. While Redis or
the broker is down the batch is retried with exponential backoff and nothing
is committed. Each outage is logged in a few lines (see
:mod:`services.common.outage`), while
``cartwheel_features_catalog_retries_total`` counts every attempt.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import redis
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from schemas.validation import Rejection
from services.common.deadletters import DeadLetterWriter
from services.common.errors import DeadLetterDeliveryError
from services.common.kafka import consume_available
from services.common.outage import OutageLog
from services.features import metrics
from services.features.catalog import CatalogWriter, parse_catalog_key
from services.features.errors import CatalogRecordError
from services.features.settings import CatalogSettings

__all__ = ["CatalogConsumer"]

logger = logging.getLogger(__name__)

_SERVICE = "catalog"
_FIRST_BACKOFF_SECONDS = 0.2
# Failures of the broker rather than of a record. A dead letter that was not
# delivered blocks the batch's commit, so it is retried like the rest.
_KAFKA_ERRORS = (KafkaException, DeadLetterDeliveryError, BufferError)


class CatalogConsumer:
    """Consumes the ``catalog`` topic in batches and stores the records.

    Args:
        settings: the catalog consumer's settings.
        consumer: a confluent-kafka consumer with manual commits.
        producer: the producer for dead letters. It is polled at every
            call of :meth:`poll_once`, so its config may route librdkafka's
            log lines to a logger.
        writer: stores the records in Redis.
    """

    def __init__(
        self,
        settings: CatalogSettings,
        consumer: Consumer,
        producer: Producer,
        writer: CatalogWriter,
    ) -> None:
        self._settings = settings
        self._topic = settings.topics.catalog
        self._consumer = consumer
        self._producer = producer
        self._writer = writer
        self._dead_letters = DeadLetterWriter(
            producer, settings.topics.dead_letters, _SERVICE
        )
        self._stopping = threading.Event()
        self._outages = {
            "redis": OutageLog(logger, "redis", "catalog batch"),
            "kafka": OutageLog(logger, "kafka", "catalog batch"),
        }

    def run(self) -> None:
        """Subscribe and store records until :meth:`stop` is called."""
        self._consumer.subscribe([self._topic])
        logger.info("catalog consumer started topic=%s", self._topic)
        try:
            while not self._stopping.is_set():
                self.poll_once()
        finally:
            self._producer.flush(10.0)
            self._consumer.close()
            logger.info("catalog consumer stopped topic=%s", self._topic)

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current batch (thread-safe)."""
        self._stopping.set()

    def poll_once(self) -> int:
        """Consume, store and commit one batch; return its message count."""
        # Log lines of librdkafka reach the logger only when the producer is
        # polled, and an idle consumer sends no dead letters.
        self._producer.poll(0)
        messages = [
            message
            for message in consume_available(
                self._consumer,
                self._settings.batch_size,
                self._settings.poll_timeout_seconds,
            )
            if not _is_error(message, self._topic)
        ]
        if not messages:
            return 0
        delay = _FIRST_BACKOFF_SECONDS
        while not self._stopping.is_set():
            try:
                # Redis may stay down for long, so every retry polls too.
                self._producer.poll(0)
                self._store(messages)
                self._dead_letters.flush()
                self._consumer.commit(
                    offsets=_next_offsets(messages), asynchronous=False
                )
                for outage in self._outages.values():
                    outage.recovered()
                return len(messages)
            except (redis.exceptions.RedisError, *_KAFKA_ERRORS) as exc:
                cause = (
                    "redis" if isinstance(exc, redis.exceptions.RedisError) else "kafka"
                )
                self._outages[cause].failed(exc, delay)
                metrics.CATALOG_RETRIES.inc()
            self._stopping.wait(delay)
            delay = min(delay * 2, self._settings.retry_max_seconds)
        return len(messages)

    def _store(self, messages: Sequence[Message]) -> None:
        for message in messages:
            kind = "unknown"
            try:
                kind, _ = parse_catalog_key(message.key())
                self._writer.apply(message.key(), message.value())
            except CatalogRecordError as exc:
                self._reject(message, exc.rejection)
                metrics.CATALOG_RECORDS.labels(kind, "rejected").inc()
                continue
            outcome = "deleted" if message.value() is None else "stored"
            metrics.CATALOG_RECORDS.labels(kind, outcome).inc()

    def _reject(self, message: Message, rejection: Rejection) -> None:
        self._dead_letters.send(
            rejection,
            raw_key=message.key(),
            raw_value=message.value(),
            source_topic=self._topic,
            source_partition=message.partition() or 0,
            source_offset=message.offset() or 0,
        )


def _next_offsets(messages: Sequence[Message]) -> list[TopicPartition]:
    """Return the offset after the last message of each partition."""
    offsets: dict[tuple[str, int], int] = {}
    for message in messages:
        key = (message.topic() or "", message.partition() or 0)
        offsets[key] = max(offsets.get(key, 0), (message.offset() or 0) + 1)
    return [
        TopicPartition(topic, partition, offset)
        for (topic, partition), offset in sorted(offsets.items())
    ]


def _is_error(message: Message, topic: str) -> bool:
    error = message.error()
    if error is None:
        return False
    if error.code() != KafkaError._PARTITION_EOF:
        logger.warning("consume error topic=%s error=%s", topic, error)
    return True
