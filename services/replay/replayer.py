"""Publish a dataset or a raw JSON-lines file to Kafka, as a shop's site would.

The replay validates every message with :func:`schemas.validation.parse_event`
before it publishes it, dataset events included, so its throughput includes
validation. Valid events go to the ``events`` topic keyed by ``user_id``, with
the bytes that were validated. Rejected messages go to the dead-letter topic
with their reason through :class:`~services.common.deadletters.DeadLetterWriter`
and never stop the replay. Catalog records (items and the generated promotions
and reviews) go to the ``catalog`` topic, keyed by their entity key, before
the events.

Delivery: the producer is idempotent with ``acks=all``; the replay flushes at
the end and raises :class:`~services.replay.errors.ReplayDeliveryError` unless
the broker acknowledged every message. Events are published in the order they
come, which is event-time order for datasets and file order for raw files, so
each user's events stay in order within their partition.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from tqdm import tqdm

from schemas.catalog import ItemRecord, PromotionRecord, ReviewRecord, catalog_key
from schemas.events import Event
from schemas.validation import Rejection, parse_event
from services.common.deadletters import DeadLetterWriter
from services.common.kafka import TopicSpec, producer_config, verify_topics
from services.replay.errors import ReplayDeliveryError, ReplayFileError
from services.replay.jsonl import ReplayFileLines
from services.replay.settings import Settings

__all__ = [
    "ReplaySummary",
    "Replayer",
    "serialize_events",
    "verify_replay_topics",
]

logger = logging.getLogger(__name__)

CatalogItem = ItemRecord | PromotionRecord | ReviewRecord

# The loop serves delivery reports, refreshes the validation clock and moves
# the progress bar once per this many messages. Doing it per message costs
# more than validation itself.
_BATCH_MESSAGES = 4096
# How long produce() waits for room in librdkafka's queue before giving up.
_QUEUE_FULL_TIMEOUT_SECONDS = 30.0
_FLUSH_TIMEOUT_SECONDS = 60.0
# Shorter than a normal flush, because the user is waiting to stop.
_INTERRUPT_FLUSH_TIMEOUT_SECONDS = 10.0


@dataclass
class ReplaySummary:
    """Counts and throughput of one replay.

    ``blank_lines`` counts the blank lines of a replay file, which are skipped
    rather than published or dead-lettered. It is None for a dataset replay.
    """

    source: str
    events_by_type: Counter[str] = field(default_factory=Counter)
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    catalog_by_type: Counter[str] = field(default_factory=Counter)
    blank_lines: int | None = None
    elapsed_seconds: float = 0.0

    @property
    def events_published(self) -> int:
        """Valid events published on the events topic."""
        return sum(self.events_by_type.values())

    @property
    def messages_rejected(self) -> int:
        """Messages sent to the dead-letter topic."""
        return sum(self.rejected_by_reason.values())

    @property
    def messages_per_second(self) -> float:
        """Input messages (published or rejected) per second, delivery included."""
        processed = self.events_published + self.messages_rejected
        return processed / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def lines(self) -> list[str]:
        """Return the summary as short human-readable lines."""
        skipped = []
        if self.blank_lines is not None:
            skipped.append(f"blank lines skipped: {self.blank_lines}")
        return [
            f"source: {self.source}",
            "catalog records: " + _format_counts(self.catalog_by_type),
            f"events published: {self.events_published} ("
            + _format_counts(self.events_by_type)
            + ")",
            f"rejected: {self.messages_rejected} ("
            + _format_counts(self.rejected_by_reason)
            + ")",
            *skipped,
            f"elapsed: {self.elapsed_seconds:.2f} s, "
            f"{self.messages_per_second:,.0f} messages/s (published and rejected, "
            "validation and delivery included)",
        ]


def _format_counts(counts: Counter[str]) -> str:
    if not counts:
        return "none"
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))


def serialize_events(events: Iterable[Event]) -> list[bytes]:
    """Serialize events to the JSON that site producers send, nulls left out."""
    return [event.model_dump_json(exclude_none=True).encode() for event in events]


def verify_replay_topics(settings: Settings) -> None:
    """Check that the events, dead-letter and catalog topics exist.

    Tansu acknowledges writes to a missing topic and drops them, so a replay
    checks before it publishes anything. Call it before building a
    :class:`Replayer`: its producer has no logger, so without a broker
    librdkafka would print its connection failures around the error.

    Raises:
        TopicMissingError: a topic is missing or has another partition count.
        BrokerUnreachableError: no broker responded.
    """
    topics = settings.topics
    verify_topics(
        settings.kafka,
        [
            TopicSpec(topics.events, topics.partitions),
            TopicSpec(topics.dead_letters, topics.partitions),
            TopicSpec(topics.catalog, topics.partitions, is_compacted=True),
        ],
    )


class Replayer:
    """Publish catalog records, events and raw files through one producer.

    Args:
        settings: Kafka connection, topic names and producer tuning.
        producer_factory: builds the producer from a librdkafka config; tests
            pass a fake.
        monotonic: seconds for pacing and throughput; tests inject a fake.
        wall_clock: the current UTC time used by validation to reject events
            from the future.
        show_progress: draw a progress bar on stderr.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] | None = None,
        show_progress: bool = True,
    ) -> None:
        self._settings = settings
        self._topics = settings.topics
        self._monotonic = monotonic
        self._wall_clock = wall_clock or _utc_now
        self._show_progress = show_progress
        # The callback object holds no reference back to the replayer, so the
        # producer is freed (and its connections closed) with the replayer.
        self._delivery_failures = _DeliveryFailures()
        config = {
            **producer_config(settings.kafka, linger_ms=settings.linger_ms),
            # A replay enqueues far faster than a site does; a deep queue keeps
            # produce() from blocking between the rare polls.
            "queue.buffering.max.messages": settings.queue_max_messages,
            # Reports for delivered messages would cost a Python call per
            # message; failures are all the replay needs.
            "delivery.report.only.error": True,
            "on_delivery": self._delivery_failures,
        }
        self._producer = producer_factory(config)
        self._dead_letters = DeadLetterWriter(
            self._producer, self._topics.dead_letters, settings.service_name
        )

    def publish_catalog(self, records: Iterable[CatalogItem]) -> Counter[str]:
        """Publish catalog records keyed by their entity key and wait for them.

        Returns:
            The number of records published, by record type.

        Raises:
            ReplayDeliveryError: the broker did not acknowledge every record.
        """
        counts: Counter[str] = Counter()
        topic = self._topics.catalog
        for record in records:
            self._produce(
                topic,
                record.model_dump_json(exclude_none=True).encode(),
                catalog_key(record).encode(),
            )
            counts[record.record_type] += 1
        self._flush()
        logger.info("catalog published topic=%s records=%s", topic, dict(counts))
        return counts

    def replay_events(
        self,
        events: Sequence[Event],
        *,
        source: str,
        time_scale: float | None = None,
        limit: int | None = None,
    ) -> ReplaySummary:
        """Serialize, validate and publish events in their order.

        Args:
            events: events in event-time order, as an adapter returns them.
            source: names the input in dead letters and the summary, such as
                ``dataset:rees46``.
            time_scale: None publishes as fast as possible; a factor F waits so
                that gaps between event times shrink F-fold.
            limit: publish at most this many input messages.

        Raises:
            ReplayDeliveryError: the broker did not acknowledge every message.
        """
        if limit is not None:
            events = events[:limit]
        started = self._monotonic()
        raw_values = serialize_events(events)
        return self._replay(
            enumerate(raw_values),
            source=source,
            total=len(raw_values),
            time_scale=time_scale,
            # The events are already cut to the limit; it is passed for the log.
            limit=limit,
            started=started,
        )

    def replay_file(
        self,
        path: Path,
        *,
        time_scale: float | None = None,
        limit: int | None = None,
    ) -> ReplaySummary:
        """Validate and publish each line of a JSON-lines file (or .jsonl.gz).

        Lines are passed to validation as they are, bad ones included, except
        that blank lines are skipped (and counted in the summary) and a byte
        order mark at the start of the file is dropped. A rejected line goes
        to the dead-letter topic with ``source_topic`` ``file:<name>`` and
        ``source_offset`` set to its line number in the file (from 1, blank
        lines included).

        Raises:
            FileNotFoundError: the file does not exist.
            ReplayFileError: the file cannot be read to its end. The lines
                before the failure are delivered first.
            ReplayDeliveryError: the broker did not acknowledge every message.
        """
        lines = ReplayFileLines(path)
        summary = self._replay(
            lines,
            source=f"file:{path.name}",
            total=None,
            time_scale=time_scale,
            limit=limit,
            started=self._monotonic(),
        )
        summary.blank_lines = lines.blank_lines
        return summary

    def _replay(
        self,
        messages: Iterable[tuple[int, bytes]],
        *,
        source: str,
        total: int | None,
        time_scale: float | None,
        limit: int | None,
        started: float,
    ) -> ReplaySummary:
        if time_scale is not None and not 0 < time_scale < math.inf:
            raise ValueError(f"time_scale={time_scale!r}; expected a positive factor")
        summary = ReplaySummary(source)
        pacer = None
        if time_scale is not None:
            pacer = _Pacer(time_scale, self._monotonic, self._producer.poll)
        progress = tqdm(
            total=total if limit is None or total is None else min(total, limit),
            unit="event",
            unit_scale=True,
            file=sys.stderr,
            disable=not self._show_progress,
            mininterval=0.5,
        )
        logger.info(
            "replay started source=%s topic=%s time_scale=%s limit=%s",
            source,
            self._topics.events,
            time_scale,
            limit,
        )
        with progress:
            try:
                self._publish(messages, summary, pacer, progress, limit)
            except ReplayFileError:
                # The lines before the unreadable part are already queued, and
                # the error message states that they were published.
                self._flush()
                raise
            except KeyboardInterrupt:
                self._report_interrupted(summary)
                raise
        try:
            self._flush()
        except KeyboardInterrupt:
            self._report_interrupted(summary)
            raise
        summary.elapsed_seconds = self._monotonic() - started
        logger.info(
            "replay finished source=%s published=%s rejected=%s "
            "messages_per_second=%.0f",
            source,
            summary.events_published,
            summary.messages_rejected,
            summary.messages_per_second,
        )
        return summary

    def _report_interrupted(self, summary: ReplaySummary) -> None:
        """Deliver what Ctrl-C or SIGTERM left queued and log how far it got.

        Without the flush, the producer would drop the queued messages when
        the process exits. A second Ctrl-C stops the wait.
        """
        undelivered = self._producer.flush(_INTERRUPT_FLUSH_TIMEOUT_SECONDS)
        logger.warning(
            "replay interrupted source=%s published=%s rejected=%s undelivered=%s",
            summary.source,
            summary.events_published,
            summary.messages_rejected,
            undelivered,
        )

    def _publish(
        self,
        messages: Iterable[tuple[int, bytes]],
        summary: ReplaySummary,
        pacer: _Pacer | None,
        progress: tqdm[Any],
        limit: int | None,
    ) -> None:
        """Validate each message, then publish it or dead-letter it.

        This loop sets the replay's throughput, so it keeps the per-message
        work to validation, one produce call and one counter update.
        """
        # LIMITATION(L-13): one Python thread serializes, validates and
        # produces, at about 150,000 events per CPU-second. On a machine whose
        # cores are busy with other work the replay falls below that.
        # A paced replay is slow anyway, so its progress bar moves more often.
        batch = _BATCH_MESSAGES if pacer is None else 64
        by_type = summary.events_by_type
        topic = self._topics.events
        produce = self._producer.produce
        now = self._wall_clock()
        count = 0
        for offset, raw in messages:
            if limit is not None and count >= limit:
                break
            count += 1
            if count % batch == 0:
                self._producer.poll(0)
                now = self._wall_clock()
                progress.update(batch)
            result = parse_event(raw, now=now)
            if isinstance(result, Rejection):
                summary.rejected_by_reason[result.reason.value] += 1
                self._dead_letters.send(
                    result,
                    raw_key=None,
                    raw_value=raw,
                    source_topic=summary.source,
                    source_partition=-1,
                    source_offset=offset,
                )
                continue
            if pacer is not None:
                pacer.wait_for(result.event_time.timestamp())
            key = result.user_id.encode()
            try:
                produce(topic, raw, key)
            except BufferError:
                self._produce(topic, raw, key)
            # EventType is a StrEnum, so its members count as their values.
            by_type[result.event_type] += 1
        progress.update(count % batch)

    def _produce(self, topic: str, value: bytes, key: bytes) -> None:
        """Produce one message, serving delivery reports while the queue is full."""
        deadline = self._monotonic() + _QUEUE_FULL_TIMEOUT_SECONDS
        while True:
            try:
                self._producer.produce(topic, value, key)
                return
            except BufferError as exc:
                if self._monotonic() > deadline:
                    raise ReplayDeliveryError(
                        f"the producer queue stayed full for "
                        f"{_QUEUE_FULL_TIMEOUT_SECONDS:.0f} s while publishing to "
                        f"{topic!r}; check that the broker at "
                        f"{self._settings.kafka.bootstrap} is up"
                    ) from exc
                self._producer.poll(0.1)

    def close(self) -> None:
        """Drop the messages still queued and release the producer's connections.

        Every publishing call flushes before it returns, so only an interrupted
        one leaves messages behind. Closing before the broker stops keeps
        librdkafka from printing connection errors to stderr.
        """
        self._producer.purge()
        self._producer.close()

    def _flush(self) -> None:
        # The dead-letter writer flushes the shared producer and raises when a
        # dead letter was lost; the events' own failures are checked after it.
        self._dead_letters.flush(_FLUSH_TIMEOUT_SECONDS)
        remaining = self._producer.flush(0)
        failures = self._delivery_failures.take()
        if failures:
            raise ReplayDeliveryError(
                f"{len(failures)} message(s) were not delivered, the first with "
                f"error {failures[0]!r}; check the broker at "
                f"{self._settings.kafka.bootstrap} and replay again (event ids "
                "are deterministic, so consumers drop the repeats)"
            )
        if remaining:
            raise ReplayDeliveryError(
                f"{remaining} message(s) still queued after "
                f"{_FLUSH_TIMEOUT_SECONDS:.0f} s; check that the broker at "
                f"{self._settings.kafka.bootstrap} is reachable"
            )


_PURGED = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})


class _DeliveryFailures:
    """Delivery-report callback that collects the errors of failed messages."""

    # Past this many, failures are only counted, so that a dead broker does
    # not flood the log.
    _MAX_LOGGED = 100

    def __init__(self) -> None:
        self._errors: list[str] = []

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            return
        if error.code() in _PURGED:
            # Only close() purges, after an interrupted replay has logged how
            # many messages were left undelivered.
            return
        if len(self._errors) < self._MAX_LOGGED:
            logger.error("delivery failed topic=%s error=%s", message.topic(), error)
        self._errors.append(str(error))

    def take(self) -> list[str]:
        """Return the errors collected so far and start a new list."""
        errors, self._errors = self._errors, []
        return errors


class _Pacer:
    """Wait so that event-time gaps pass ``time_scale`` times faster.

    The wait serves the producer's delivery reports (``poll``) instead of
    sleeping, and the first event sets the start of both clocks.
    """

    def __init__(
        self,
        time_scale: float,
        monotonic: Callable[[], float],
        poll: Callable[[float], object],
    ) -> None:
        self._time_scale = time_scale
        self._monotonic = monotonic
        self._poll = poll
        self._first_event_time: float | None = None
        self._first_wall_time = 0.0

    def wait_for(self, event_time: float) -> None:
        if self._first_event_time is None:
            self._first_event_time = event_time
            self._first_wall_time = self._monotonic()
            return
        due = (
            self._first_wall_time
            + (event_time - self._first_event_time) / self._time_scale
        )
        # Bounded: each round waits for the rest of the gap, and the monotonic
        # clock reaches ``due`` after at most that long.
        while (remaining := due - self._monotonic()) > 0:
            self._poll(remaining)


def _utc_now() -> datetime:
    return datetime.now(UTC)
