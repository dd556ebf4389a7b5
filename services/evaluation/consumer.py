"""Reads events, slates and the catalog from Kafka into the evaluator.

Delivery: every record is read at least once per run. The evaluator assigns
each partition itself at its first offset and never commits. Every run thus
reads the topics from the beginning under its own group id and leaves other
groups' offsets alone. Repeated events and slates are dropped by id later.
Ordering: only the order within a partition is kept, which is enough because
the evaluator sorts events by event time and applies catalog records per key
(one key lives in one partition).
Malformed input: a record that fails validation, or a slate of another
surface than its topic's, is skipped and counted per topic, with one WARNING
per topic, and never stops the read. Every record is validated in strict JSON
mode, so the evaluator reads only what the JSON Schemas accept. Events pass
:func:`~schemas.validation.parse_event`, as on the hot path, with the time
checks made against the evaluation's clock. Catalog records pass
:func:`~schemas.validation.parse_catalog_record`, as in the catalog consumer.

The read stops when every partition has reported end-of-partition at the high
watermark learned from its fetch responses. Some brokers (Tansu 0.6) return
too low an end offset from ListOffsets, so that lookup is never used.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from pydantic import ValidationError

from schemas.catalog import RECORD_MODELS
from schemas.recommendations import Slate, Surface
from schemas.validation import Rejection, parse_catalog_record, parse_event
from services.common.errors import InfrastructureError, TopicMissingError
from services.common.kafka import consumer_config, require_listener
from services.evaluation.errors import ReplayReadTimeoutError
from services.evaluation.prequential import PrequentialEvaluator
from services.evaluation.settings import EvaluationSettings

__all__ = ["ReadSummary", "read_topics"]

logger = logging.getLogger(__name__)

_BATCH_SIZE = 1000
_POLL_SECONDS = 0.2
_METADATA_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class ReadSummary:
    """Records read per topic and how many of them were malformed."""

    records: dict[str, int]
    malformed: dict[str, int]


def read_topics(
    evaluator: PrequentialEvaluator,
    settings: EvaluationSettings,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> ReadSummary:
    """Read the events, catalog and slate topics up to their end.

    Args:
        evaluator: receives every valid event, slate and catalog record.
        settings: Kafka connection, topic names, group id and read timeout.
        clock: monotonic seconds, for the read deadline.

    Returns:
        counts of records read and skipped per topic.

    Raises:
        BrokerUnreachableError: no broker listens at the bootstrap address.
        InfrastructureError: the brokers did not return the topics' metadata.
        TopicMissingError: a topic does not exist.
        ReplayReadTimeoutError: some partitions were not read to their end
            within ``settings.read_timeout_seconds``.
    """
    # Fails at once, before librdkafka retries a refused address in its logs.
    require_listener(settings.kafka)
    topics = settings.topics
    slate_topics = {
        topics.recommendations(surface.value): surface for surface in Surface
    }
    reader = _TopicReader(evaluator, topics.events, topics.catalog, slate_topics)
    config = {
        **consumer_config(settings.kafka, settings.group_id),
        # An end-of-partition event at the fetch high watermark is how the
        # reader knows it has caught up.
        "enable.partition.eof": True,
    }
    consumer = Consumer(config)
    try:
        partitions = _assign_from_beginning(consumer, reader.topics)
        _consume_to_end(consumer, reader, partitions, settings, clock)
    finally:
        consumer.close()
    summary = ReadSummary(dict(reader.records), dict(reader.malformed))
    logger.info(
        "topics read records=%s malformed=%s group=%s",
        summary.records,
        summary.malformed,
        settings.group_id,
    )
    # Only the first malformed record of each topic is logged, so the count
    # must reach the default log level too.
    if summary.malformed:
        logger.warning(
            "malformed records skipped total=%d by_topic=%s",
            sum(summary.malformed.values()),
            dict(sorted(summary.malformed.items())),
        )
    return summary


def _assign_from_beginning(
    consumer: Consumer, topics: Sequence[str]
) -> set[tuple[str, int]]:
    try:
        metadata = consumer.list_topics(timeout=_METADATA_TIMEOUT_SECONDS)
    except KafkaException as exc:
        raise InfrastructureError(
            f"the Kafka cluster did not return the topics within "
            f"{_METADATA_TIMEOUT_SECONDS:.0f} s ({exc}); check "
            "CARTWHEEL_KAFKA_BOOTSTRAP or --bootstrap"
        ) from exc
    missing = [topic for topic in topics if topic not in metadata.topics]
    if missing:
        raise TopicMissingError(
            f"topics {missing} are missing; create them with 'cartwheel topics "
            "create' and replay events before evaluating"
        )
    assignment = [
        TopicPartition(topic, partition, OFFSET_BEGINNING)
        for topic in topics
        for partition in sorted(metadata.topics[topic].partitions)
    ]
    consumer.assign(assignment)
    return {(tp.topic, tp.partition) for tp in assignment}


def _consume_to_end(
    consumer: Consumer,
    reader: _TopicReader,
    pending: set[tuple[str, int]],
    settings: EvaluationSettings,
    clock: Callable[[], float],
) -> None:
    # LIMITATION(L-62): a partition that reported its end is not read again,
    # so records produced after that moment are left out. Run the evaluator
    # once the pipeline has drained.
    deadline = clock() + settings.read_timeout_seconds
    while pending:
        if clock() > deadline:
            raise ReplayReadTimeoutError(
                f"partitions {sorted(pending)} were not read to their end within "
                f"{settings.read_timeout_seconds} s; raise "
                "CARTWHEEL_EVALUATION_READ_TIMEOUT_SECONDS or check the broker"
            )
        for message in consumer.consume(_BATCH_SIZE, timeout=_POLL_SECONDS):
            error = message.error()
            if error is None:
                reader.handle(message)
            elif error.code() == KafkaError._PARTITION_EOF:
                if _is_at_high_watermark(consumer, message):
                    pending.discard(_position(message))
            elif error.fatal():
                raise InfrastructureError(f"the evaluator's consumer failed: {error}")
            else:
                logger.warning("consumer error, retrying error=%s", error)


def _position(message: Message) -> tuple[str, int]:
    return str(message.topic()), message.partition() or 0


def _is_at_high_watermark(consumer: Consumer, message: Message) -> bool:
    partition = TopicPartition(*_position(message))
    _, high = consumer.get_watermark_offsets(partition, cached=True)
    offset = message.offset()
    return offset is not None and high >= 0 and offset >= high


class _TopicReader:
    """Parses records by topic and hands them to the evaluator."""

    def __init__(
        self,
        evaluator: PrequentialEvaluator,
        events_topic: str,
        catalog_topic: str,
        slate_topics: Mapping[str, Surface],
    ) -> None:
        self._evaluator = evaluator
        self._events_topic = events_topic
        self._catalog_topic = catalog_topic
        self._slate_topics = slate_topics
        self.topics = [events_topic, catalog_topic, *slate_topics]
        self.records: Counter[str] = Counter()
        self.malformed: Counter[str] = Counter()

    def handle(self, message: Message) -> None:
        topic = str(message.topic())
        self.records[topic] += 1
        value = message.value()
        try:
            if topic == self._catalog_topic:
                self._handle_catalog(message.key(), value)
            elif value is None:
                raise ValueError("null value")
            elif topic == self._events_topic:
                self._handle_event(value)
            else:
                self._handle_slate(self._slate_topics[topic], value)
        except (ValidationError, ValueError) as exc:
            self.malformed[topic] += 1
            if self.malformed[topic] == 1:
                logger.warning(
                    "malformed record skipped topic=%s partition=%s offset=%s error=%s",
                    topic,
                    message.partition(),
                    message.offset(),
                    str(exc).splitlines()[0],
                )

    def _handle_event(self, value: bytes) -> None:
        event = parse_event(value)
        if isinstance(event, Rejection):
            raise ValueError(f"{event.reason}: {event.message}")
        self._evaluator.add_event(event)

    def _handle_slate(self, surface: Surface, value: bytes) -> None:
        slate = Slate.model_validate_json(value, strict=True)
        # The evaluator files a slate under its own surface, so a slate
        # published to another surface's topic would be scored there.
        if slate.surface is not surface:
            raise ValueError(
                f"slate of surface {slate.surface.value!r} on the topic of "
                f"surface {surface.value!r}"
            )
        self._evaluator.add_slate(slate)

    def _handle_catalog(self, key: bytes | None, value: bytes | None) -> None:
        if value is not None:
            # The key's kind picks the model, as the catalog consumer does: a
            # record without record_type is of the kind that its key names.
            kind = (key or b"").decode("utf-8", errors="replace").partition(":")[0]
            if kind not in RECORD_MODELS:
                raise ValueError(f"catalog key {key!r} names no record kind")
            record = parse_catalog_record(kind, value)
            if isinstance(record, Rejection):
                raise ValueError(f"{record.reason}: {record.message}")
            self._evaluator.add_catalog_record(record)
        elif key is not None:
            self._evaluator.delete_catalog_key(key.decode("utf-8"))
        else:
            raise ValueError("catalog tombstone without a key")
