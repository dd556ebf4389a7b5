"""A consumed batch of the events topic: decoded, cut into waves and counted.

:func:`decode_batch` validates each message into an event or a rejection and
records the offsets to commit. :func:`split_into_waves` cuts the events into
contiguous runs with no user twice, the unit in which stages see state that
includes every earlier event of the same user and none of the later ones.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import KafkaError, Message

from schemas.events import Event
from schemas.validation import Rejection, parse_event
from services.common.logging import RepeatFilter
from services.common.redis_features import AppliedResult, EventPosition, EventStatus
from services.hotpath import metrics

__all__ = [
    "Batch",
    "count_results",
    "decode_batch",
    "log_duplicates",
    "split_into_waves",
]

logger = logging.getLogger(__name__)

# A producer that keys every event wrongly would write a line per event, so
# one line passes every 10 s and the counter counts them all.
_keys_logger = logging.getLogger(f"{__name__}.keys")
_keys_logger.addFilter(
    RepeatFilter(interval_seconds=10.0, varying=re.compile(r"\b\w+=\S+"))
)
# The same for events dropped because their id was applied before.
_duplicates_logger = logging.getLogger(f"{__name__}.duplicates")
_duplicates_logger.addFilter(
    RepeatFilter(interval_seconds=10.0, varying=re.compile(r"\b\w+=\S+"))
)


@dataclass
class Batch:
    """One consumed batch, decoded."""

    events: list[Event] = field(default_factory=list)
    positions: list[EventPosition] = field(default_factory=list)
    rejected: list[tuple[Message, Rejection]] = field(default_factory=list)
    next_offsets: dict[int, int] = field(default_factory=dict)
    messages: dict[EventPosition, Message] = field(default_factory=dict)


def _note_key_mismatch(message: Message, event: Event) -> None:
    # Such an event is still applied, because it is valid and holding it back
    # would lose it for a producer bug. Its order against the user's other
    # events holds only while they land in one partition.
    metrics.KEY_MISMATCHES.inc()
    _keys_logger.warning(
        "event key is not its user_id, so the user's events may be reordered; "
        "key every event by its user_id event_id=%s user_id=%s key=%r",
        event.event_id,
        event.user_id,
        message.key(),
    )


def split_into_waves(
    events: Sequence[Event], positions: Sequence[EventPosition]
) -> list[tuple[list[Event], list[EventPosition]]]:
    """Cut the batch into contiguous runs in which no user appears twice."""
    waves: list[tuple[list[Event], list[EventPosition]]] = []
    users: set[str] = set()
    for event, position in zip(events, positions, strict=True):
        if not waves or event.user_id in users:
            waves.append(([], []))
            users = set()
        users.add(event.user_id)
        waves[-1][0].append(event)
        waves[-1][1].append(position)
    return waves


def decode_batch(
    messages: Sequence[Message],
    received_at: float,
    topic: str,
    on_rejected: Callable[[Message, Rejection], None],
) -> Batch:
    """Validate consumed messages into a batch; hand each rejection to ``on_rejected``.

    Args:
        messages: the consumed messages, in the order they were read.
        received_at: Unix time of the read, the "now" of the time checks.
        topic: the events topic, for the log line of a consume error.
        on_rejected: called for each message that is not a valid event, so
            that it goes to the dead-letter topic.
    """
    batch = Batch()
    now = datetime.fromtimestamp(received_at, UTC)
    for message in messages:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                logger.warning("consume error topic=%s error=%s", topic, error)
            continue
        partition, offset = message.partition() or 0, message.offset() or 0
        batch.next_offsets[partition] = offset + 1
        result = parse_event(message.value(), now=now)
        if isinstance(result, Rejection):
            batch.rejected.append((message, result))
            on_rejected(message, result)
            metrics.EVENTS_PROCESSED.labels("unknown", "rejected").inc()
            continue
        if message.key() != result.user_id.encode():
            _note_key_mismatch(message, result)
        position = EventPosition(partition, offset)
        batch.events.append(result)
        batch.positions.append(position)
        batch.messages[position] = message
    return batch


def log_duplicates(results: Sequence[AppliedResult]) -> None:
    """Log the events that Redis dropped because their id was applied before.

    A producer that retries a send repeats the event whole, and dropping the
    repeat is right. A producer that gives two different events one id loses
    the second with nothing else to show for it, so each drop is logged (one
    line per 10 s, with a count of the lines held back).
    """
    for result in results:
        if result.status is not EventStatus.DUPLICATE:
            continue
        event, position = result.event, result.position
        _duplicates_logger.warning(
            "event dropped, its event_id was already applied for this user: "
            "harmless for a retried send, but an event that reuses another "
            "event's id is lost event_id=%s user_id=%s event_type=%s "
            "partition=%s offset=%s",
            event.event_id,
            event.user_id,
            event.event_type.value,
            position.partition if position is not None else None,
            position.offset if position is not None else None,
        )


def count_results(results: Sequence[AppliedResult]) -> None:
    """Count applied events by type and outcome, and duplicates and late ones."""
    for result in results:
        event_type = result.event.event_type.value
        metrics.EVENTS_PROCESSED.labels(event_type, result.status.value).inc()
        if result.status is EventStatus.DUPLICATE:
            metrics.DUPLICATE_EVENTS.inc()
        elif result.status is EventStatus.LATE:
            metrics.LATE_EVENTS.labels("late").inc()
        elif result.status is EventStatus.STALE:
            metrics.LATE_EVENTS.labels("stale").inc()
