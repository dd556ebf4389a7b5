"""Refill the session-kNN index from the events a partition already holds.

The index lives in the scoring process, so a restarted hot path, or one that
was just assigned another member's partitions, would start with no sessions
for them. When partitions arrive, :func:`warm_session_index` reads back the
last events before each one's resume offset and adds them to the index, as
processing them would have. The warm-up reads only what the index keeps:
session keys, items and event times. Features, learning and slates are not
repeated.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, TopicPartition

from schemas.validation import Rejection, parse_event
from services.common.kafka import consumer_config
from services.common.settings import KafkaSettings
from services.scorer.session_knn import SessionIndex, session_key

__all__ = ["WarmupResult", "warm_session_index"]

logger = logging.getLogger(__name__)

_BATCH = 1_000


@dataclass(frozen=True)
class WarmupResult:
    """The outcome of one warm-up.

    Attributes:
        events: valid events added to the index.
        skipped: messages that were not valid events.
        is_complete: every partition was read up to its resume offset
            before the deadline.
    """

    events: int
    skipped: int
    is_complete: bool


def warm_session_index(
    index: SessionIndex,
    kafka: KafkaSettings,
    topic: str,
    resume_offsets: Mapping[int, int],
    events_per_partition: int,
    timeout_seconds: float,
) -> WarmupResult:
    """Add the events before each partition's resume offset to ``index``.

    Args:
        index: the session index to fill.
        kafka: connection settings.
        topic: the events topic.
        resume_offsets: the offset each partition resumes at; the events
            before it were processed by an earlier owner.
        events_per_partition: how many events before the resume offset are
            read, at most, per partition.
        timeout_seconds: the time the whole warm-up may take; what was read by
            then stays in the index.
    """
    starts = {
        partition: max(0, offset - events_per_partition)
        for partition, offset in resume_offsets.items()
        if offset > 0 and events_per_partition > 0
    }
    if not starts:
        return WarmupResult(0, 0, is_complete=True)
    # A consumer of its own, outside the hot path's group, that commits nothing.
    config = consumer_config(kafka, f"cartwheel-session-warmup-{uuid.uuid4().hex}")
    config["enable.partition.eof"] = True
    consumer = Consumer(config)
    try:
        consumer.assign(
            [
                TopicPartition(topic, partition, first)
                for partition, first in starts.items()
            ]
        )
        return _read_until(
            consumer, index, resume_offsets, set(starts), timeout_seconds
        )
    finally:
        consumer.close()


def _read_until(
    consumer: Consumer,
    index: SessionIndex,
    resume_offsets: Mapping[int, int],
    pending: set[int],
    timeout_seconds: float,
) -> WarmupResult:
    deadline = time.monotonic() + timeout_seconds
    events = skipped = 0
    while pending and time.monotonic() < deadline:
        for message in consumer.consume(_BATCH, timeout=0.5):
            partition = message.partition() or 0
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(partition)
                else:
                    logger.warning("session warm-up read failed error=%s", error)
                continue
            offset = message.offset() or 0
            if partition not in pending or offset >= resume_offsets[partition]:
                pending.discard(partition)
                continue
            if offset == resume_offsets[partition] - 1:
                pending.discard(partition)
            event = parse_event(message.value())
            if isinstance(event, Rejection):
                skipped += 1
                continue
            index.add(
                session_key(event.user_id, event.session_id),
                event.item_id,
                event.event_timestamp,
            )
            events += 1
    return WarmupResult(events, skipped, is_complete=not pending)
