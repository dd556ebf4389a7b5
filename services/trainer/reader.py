"""Read training examples from Kafka into the trainer's window.

Delivery: at-least-once, without a consumer group. Every trainer assigns itself
all partitions of the training-examples topic, starting at the offsets whose
timestamps fall at the start of the window, so a restarted trainer refills its
window without committed offsets. Duplicates are dropped by ``event_id`` in
the window.

Ordering: none is assumed across partitions; the window sorts by event time
before training.

Malformed input: a message that is not a valid ``TrainingExample``, or one
whose event time is more than the events' allowed clock skew (an hour) in the
future, is skipped, counted in ``cartwheel_trainer_examples_invalid_total``
and logged with its topic, partition and offset (at most one line per
minute).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaException,
    TopicPartition,
)
from pydantic import ValidationError

from schemas.training import TrainingExample
from schemas.validation import DEFAULT_MAX_FUTURE_SKEW
from services.common.errors import TopicMissingError
from services.common.kafka import consumer_config
from services.common.settings import KafkaSettings
from services.trainer.metrics import EXAMPLES_CONSUMED, EXAMPLES_INVALID
from services.trainer.window import ExampleWindow

__all__ = ["ExampleReader"]

logger = logging.getLogger(__name__)

_METADATA_TIMEOUT_SECONDS = 10.0
_BATCH_MESSAGES = 1000
_INVALID_LOG_INTERVAL_SECONDS = 60.0


class ExampleReader:
    """A consumer of the training-examples topic that fills an ExampleWindow.

    Args:
        kafka: connection settings.
        topic: the training-examples topic.
        window_seconds: how far back in message time the first read starts.
        group_id: client group id; no offsets are committed under it.
        clock: wall-clock source in Unix seconds.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        window_seconds: float,
        group_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.topic = topic
        self._clock = clock
        self._consumer = Consumer(consumer_config(kafka, group_id))
        self._next_offsets: dict[int, int | None] = {}
        self._partitions = self._assign(window_seconds)
        self._last_invalid_log = float("-inf")

    def _assign(self, window_seconds: float) -> list[TopicPartition]:
        metadata = self._consumer.list_topics(
            self.topic, timeout=_METADATA_TIMEOUT_SECONDS
        )
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise TopicMissingError(
                f"topic {self.topic!r} is missing; run 'cartwheel topics create'"
            )
        numbers = sorted(topic.partitions)
        # A window that reaches back before 1970 starts at 0, the first
        # possible timestamp. ListOffsets reserves negative timestamps (-1
        # latest, -2 earliest), and Tansu 0.6.0 closes the connection for a
        # start of about -8e12 ms (a window of 1e10 s).
        start_ms = max(int((self._clock() - window_seconds) * 1000), 0)
        wanted = [TopicPartition(self.topic, p, start_ms) for p in numbers]
        try:
            found = self._consumer.offsets_for_times(
                wanted, timeout=_METADATA_TIMEOUT_SECONDS
            )
            # -1 means no message at or after the start time: begin at the end.
            partitions = [
                TopicPartition(
                    self.topic,
                    tp.partition,
                    tp.offset if tp.offset >= 0 else OFFSET_END,
                )
                for tp in found
            ]
        except KafkaException as exc:
            # Reading from the start still works, because the window drops
            # examples older than its span.
            logger.warning(
                "offset lookup by time failed, reading from the start topic=%s "
                "error=%s",
                self.topic,
                exc,
            )
            partitions = [
                TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in numbers
            ]
        self._consumer.assign(partitions)
        # Next offset to read per partition; None until a message arrives on a
        # partition that was assigned at its end.
        self._next_offsets = {
            tp.partition: _first_offset(tp.offset) for tp in partitions
        }
        logger.info(
            "training examples assigned topic=%s partitions=%s offsets=%s",
            self.topic,
            [tp.partition for tp in partitions],
            [tp.offset for tp in partitions],
        )
        return partitions

    def poll_into(self, window: ExampleWindow, timeout_seconds: float) -> int:
        """Read one batch of messages into the window; return how many were valid."""
        messages = self._consumer.consume(_BATCH_MESSAGES, timeout=timeout_seconds)
        added = 0
        for message in messages:
            if message.error() is not None:
                logger.warning(
                    "consume error topic=%s error=%s", self.topic, message.error()
                )
                continue
            partition = message.partition() or 0
            offset = message.offset() or 0
            self._next_offsets[partition] = offset + 1
            try:
                example = TrainingExample.model_validate_json(message.value() or b"")
            except ValidationError as exc:
                self._report_invalid(
                    partition, offset, f"{exc.error_count()} validation errors"
                )
                continue
            # The window follows the newest event time, so one example from
            # the far future would push every real one out of it.
            latest = self._clock() + DEFAULT_MAX_FUTURE_SKEW.total_seconds()
            if example.event_time.timestamp() > latest:
                self._report_invalid(
                    partition,
                    offset,
                    f"event_time {example.event_time.isoformat()} is more than "
                    f"{DEFAULT_MAX_FUTURE_SKEW.total_seconds():.0f} s in the future",
                )
                continue
            window.add(example)
            added += 1
        EXAMPLES_CONSUMED.inc(added)
        return added

    def read_available(self, window: ExampleWindow, timeout_seconds: float) -> int:
        """Read until every partition is at its high watermark or the timeout passes."""
        deadline = time.monotonic() + timeout_seconds
        added = 0
        while time.monotonic() < deadline:
            added += self.poll_into(
                window, min(0.2, max(deadline - time.monotonic(), 0.0))
            )
            if self.is_caught_up():
                break
        return added

    def is_caught_up(self) -> bool:
        """True when every partition was read up to its high watermark.

        The high watermark is the one learned while fetching (``cached=True``),
        because Tansu 0.6 returns a wrong end offset for a fresh lookup. A
        partition assigned at its end counts as read until a message arrives.
        """
        for partition in self._partitions:
            _, high = self._consumer.get_watermark_offsets(partition, cached=True)
            if high < 0:
                return False
            next_offset = self._next_offsets[partition.partition]
            if next_offset is not None and next_offset < high:
                return False
        return True

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()

    def _report_invalid(self, partition: int, offset: int, reason: str) -> None:
        EXAMPLES_INVALID.inc()
        now = self._clock()
        if now - self._last_invalid_log >= _INVALID_LOG_INTERVAL_SECONDS:
            self._last_invalid_log = now
            logger.warning(
                "invalid training example skipped topic=%s partition=%s offset=%s "
                "reason=%s",
                self.topic,
                partition,
                offset,
                reason,
            )


def _first_offset(assigned: int) -> int | None:
    """Return the first offset a partition delivers, None when assigned at its end."""
    if assigned == OFFSET_BEGINNING:
        return 0
    return assigned if assigned >= 0 else None
