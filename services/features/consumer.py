"""The catalog consumer: items, promotions and reviews into Redis.

Delivery guarantee: at-least-once. Offsets are committed synchronously after
the batch is stored in Redis and its dead letters are delivered. A stop gives
up on a commit that the broker does not respond to, and the next consumer
reads the batch again. Writing a
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

Lost Redis data: the committed offsets are valid only while Redis still
contains the records stored before them. A marker in Redis
(:mod:`services.features.marker`) records which partitions Redis contains in
full. A partition without it is read from the start of the topic, when it is
assigned or at the check every ``catalog_reload_check_seconds``. Its marker
entry is set once librdkafka reports the partition's end after a committed
batch. A partition without a committed offset is read for the first time,
which is logged at INFO. A partition with one was read before, so Redis has
lost it: the re-read is logged as a WARNING and counted in
``cartwheel_features_catalog_reloads_total``. A read that restarts one left
unfinished in the marker is logged at INFO and not counted again. An invalid
record below the committed offset that a re-read started from was
dead-lettered by the earlier read, so the re-read counts it as
``rejected_again`` and sends no dead letter.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import redis
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from schemas.validation import Rejection
from services.common.deadletters import DeadLetterWriter
from services.common.errors import (
    BrokerGoneError,
    CommitPendingError,
    DeadLetterDeliveryError,
)
from services.common.kafka import (
    consume_available,
    consumer_config,
    log_partition_change,
)
from services.common.outage import OutageLog
from services.common.stop_request import (
    StopRequest,
    commit_while_reachable,
    flush_while_reachable,
)
from services.features import metrics
from services.features.catalog import CatalogWriter, parse_catalog_key
from services.features.errors import CatalogRecordError
from services.features.marker import CatalogMarker, PartitionEntry, PartitionState
from services.features.settings import CatalogSettings

__all__ = ["CatalogConsumer", "catalog_consumer_config"]

logger = logging.getLogger(__name__)

_SERVICE = "catalog"
_FIRST_BACKOFF_SECONDS = 0.2
_COMMITTED_TIMEOUT_SECONDS = 10.0
# Failures of the broker rather than of a record. A dead letter that was not
# delivered blocks the batch's commit, so it is retried like the rest.
_KAFKA_ERRORS = (KafkaException, DeadLetterDeliveryError, BufferError)


def catalog_consumer_config(settings: CatalogSettings) -> dict[str, Any]:
    """Return the librdkafka settings of the catalog consumer's group member."""
    return {
        **consumer_config(settings.kafka, settings.group_id),
        # A partition read again is complete when librdkafka reports its end.
        # The end offsets that the local Tansu broker returns can be too low.
        "enable.partition.eof": True,
    }


class CatalogConsumer:
    """Consumes the ``catalog`` topic in batches and stores the records.

    Args:
        settings: the catalog consumer's settings.
        consumer: a confluent-kafka consumer with manual commits and
            ``enable.partition.eof`` on, as :func:`catalog_consumer_config`
            configures it. Without partition ends, a partition read again is
            never marked as loaded, so each restart reads it again.
        producer: the producer for dead letters. It is polled at every
            call of :meth:`poll_once`, so its config may route librdkafka's
            log lines to a logger.
        writer: stores the records in Redis.
        marker: the Redis entries that record which partitions Redis
            contains in full.
        clock: monotonic seconds, which time the marker checks.
    """

    def __init__(
        self,
        settings: CatalogSettings,
        consumer: Consumer,
        producer: Producer,
        writer: CatalogWriter,
        marker: CatalogMarker,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._topic = settings.topics.catalog
        self._consumer = consumer
        self._producer = producer
        self._writer = writer
        self._marker = marker
        self._clock = clock
        # The event wakes the retry waits, and the request lets the flushes of
        # a stop give up once the broker is gone.
        self._stopping = threading.Event()
        self._stop_request = StopRequest(settings.kafka)
        self._dead_letters = DeadLetterWriter(
            producer, settings.topics.dead_letters, _SERVICE, stop=self._stop_request
        )
        self._outages = {
            "redis": OutageLog(logger, "redis", "catalog batch"),
            "kafka": OutageLog(logger, "kafka", "catalog batch"),
        }
        self._marker_outage = OutageLog(logger, "redis", "catalog marker update")
        # A commit given up on stop still waits, and so would a close.
        self._is_commit_pending = False
        self._assigned: set[int] = set()
        # Partitions sought to their start whose end has not been committed.
        self._reloading: set[int] = set()
        # The offset below which an earlier read dead-lettered the invalid
        # records of each partition read again.
        self._dead_lettered_below: dict[int, int] = {}
        # Partitions read to their end whose marker entry is still to write.
        self._ended: set[int] = set()
        self._next_check = clock() + settings.catalog_reload_check_seconds

    def subscribe(self) -> None:
        """Join the consumer group on the catalog topic, with rebalance callbacks."""
        # LIMITATION(L-94): nothing is logged while the group assigns no
        # partition, as when Tansu keeps electing a member that is gone.
        self._consumer.subscribe(
            [self._topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def run(self) -> None:
        """Subscribe and store records until :meth:`stop` is called."""
        self.subscribe()
        logger.info("catalog consumer started topic=%s", self._topic)
        try:
            while not self._stopping.is_set():
                self.poll_once()
        finally:
            try:
                flush_while_reachable(self._producer, 10.0, self._stop_request)
            except BrokerGoneError as exc:
                logger.warning("dead letters not confirmed on stop error=%s", exc)
            if not self._is_commit_pending:
                self._consumer.close()
            logger.info("catalog consumer stopped topic=%s", self._topic)

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current batch (thread-safe)."""
        self._stop_request.set()
        self._stopping.set()

    def poll_once(self) -> int:
        """Consume, store and commit one batch; return its message count."""
        # Log lines of librdkafka reach the logger only when the producer is
        # polled, and an idle consumer sends no dead letters.
        self._producer.poll(0)
        batch = consume_available(
            self._consumer,
            self._settings.batch_size,
            self._settings.poll_timeout_seconds,
        )
        messages = [m for m in batch if not _is_error(m, self._topic)]
        if messages and not self._store_and_commit(messages):
            return len(messages)
        self._ended |= self._reloading & {
            m.partition() or 0 for m in batch if _is_partition_end(m)
        }
        self._update_marker()
        return len(messages)

    def _store_and_commit(self, messages: Sequence[Message]) -> bool:
        """Store and commit a batch, retrying until done or stopped."""
        delay = _FIRST_BACKOFF_SECONDS
        while not self._stopping.is_set():
            try:
                # Redis may stay down for long, so every retry polls too.
                self._producer.poll(0)
                self._store(messages)
                self._dead_letters.flush()
                commit_while_reachable(
                    self._consumer, _next_offsets(messages), self._stop_request
                )
                for outage in self._outages.values():
                    outage.recovered()
                return True
            except BrokerGoneError as exc:
                # A stop found the broker gone or frozen: the batch stays
                # uncommitted, so the next consumer reads it again.
                self._is_commit_pending = isinstance(exc, CommitPendingError)
                logger.warning("catalog batch not committed on stop error=%s", exc)
                return False
            except (redis.exceptions.RedisError, *_KAFKA_ERRORS) as exc:
                if self._stopping.is_set():
                    logger.warning("catalog batch not committed on stop error=%s", exc)
                    return False
                cause = (
                    "redis" if isinstance(exc, redis.exceptions.RedisError) else "kafka"
                )
                self._outages[cause].failed(exc, delay)
                metrics.CATALOG_RETRIES.inc()
            self._stopping.wait(delay)
            delay = min(delay * 2, self._settings.retry_max_seconds)
        return False

    def _store(self, messages: Sequence[Message]) -> None:
        for message in messages:
            kind = "unknown"
            try:
                kind, _ = parse_catalog_key(message.key())
                self._writer.apply(message.key(), message.value())
            except CatalogRecordError as exc:
                outcome = self._reject(message, exc.rejection)
                metrics.CATALOG_RECORDS.labels(kind, outcome).inc()
                continue
            outcome = "deleted" if message.value() is None else "stored"
            metrics.CATALOG_RECORDS.labels(kind, outcome).inc()

    def _reject(self, message: Message, rejection: Rejection) -> str:
        """Dead-letter a message unless an earlier read did; return the outcome."""
        partition = message.partition() or 0
        offset = message.offset() or 0
        if offset < self._dead_lettered_below.get(partition, 0):
            logger.debug(
                "catalog record rejected again, not dead-lettered reason=%s "
                "topic=%s partition=%s offset=%s",
                rejection.reason,
                self._topic,
                partition,
                offset,
            )
            return "rejected_again"
        self._dead_letters.send(
            rejection,
            raw_key=message.key(),
            raw_value=message.value(),
            source_topic=self._topic,
            source_partition=partition,
            source_offset=offset,
        )
        return "rejected"

    def _update_marker(self) -> None:
        """Mark the partitions read to their end, and check the marker when due."""
        now = self._clock()
        is_due = now >= self._next_check
        if is_due:
            self._next_check = now + self._settings.catalog_reload_check_seconds
        elif not self._ended:
            return
        try:
            if self._ended:
                self._finish_reload()
            if is_due:
                self._check_marker()
        except redis.exceptions.RedisError as exc:
            # Partitions read to their end are marked at the next poll. Lost
            # partitions are found at the next check.
            if self._ended:
                retry_in = self._settings.poll_timeout_seconds
            else:
                retry_in = self._next_check - now
            self._marker_outage.failed(exc, retry_in)
            return
        self._marker_outage.recovered()

    def _finish_reload(self) -> None:
        vanished = self._marker.finish(self._ended)
        loaded = self._ended - vanished
        self._reloading -= self._ended
        self._ended = set()
        for partition in loaded:
            self._dead_lettered_below.pop(partition, None)
        if loaded:
            logger.info(
                "catalog partitions read to their end topic=%s partitions=%s group=%s",
                self._topic,
                sorted(loaded),
                self._settings.group_id,
            )
        if vanished:
            self._seek_to_start(vanished, {})

    def _check_marker(self) -> None:
        entries = self._marker.entries(self._assigned)
        unread = {
            partition
            for partition in self._assigned
            if _needs_read(entries.get(partition), partition in self._reloading)
        }
        if unread:
            self._seek_to_start(unread, entries)

    def _seek_to_start(
        self, partitions: set[int], entries: Mapping[int, PartitionEntry]
    ) -> None:
        """Seek partitions to their start and mark those sought as reloading."""
        try:
            committed = self._committed_offsets(partitions)
        except KafkaException as exc:
            # The next check finds the partitions still unread and tries again.
            self._log_committed_failure(partitions, exc)
            return
        sought = set()
        for partition in sorted(partitions):
            try:
                self._consumer.seek(
                    TopicPartition(self._topic, partition, OFFSET_BEGINNING)
                )
            except KafkaException as exc:
                # The next check finds the partition still lost and seeks again.
                logger.warning(
                    "catalog seek failed topic=%s partition=%s error=%s",
                    self._topic,
                    partition,
                    exc,
                )
                continue
            sought.add(partition)
        if sought:
            self._start_reads(sought, entries, committed)

    def _start_reads(
        self,
        partitions: set[int],
        entries: Mapping[int, PartitionEntry],
        committed: Mapping[int, int | None],
    ) -> None:
        """Record the reads from the start of partitions, then log and count them.

        Args:
            partitions: the partitions read from their start.
            entries: their marker entries, where they have one.
            committed: the group's committed offset of each, None where it
                has none.
        """
        # A read from the start commits lower offsets than an earlier read
        # did, so the highest offset known is kept: the one of an unfinished
        # read in the marker or in memory, or the committed one.
        below = {
            p: _highest(
                committed.get(p),
                self._dead_lettered_below.get(p),
                _started_at(entries.get(p)),
            )
            for p in partitions
        }
        self._dead_lettered_below.update(
            {p: offset for p, offset in below.items() if offset is not None}
        )
        # A partition sought whose entry is not written is not yet counted as
        # reloading, so the next check seeks it again.
        self._marker.start(below)
        self._reloading |= partitions
        self._ended -= partitions
        self._log_reads(partitions, entries, below)

    def _log_reads(
        self,
        partitions: set[int],
        entries: Mapping[int, PartitionEntry],
        below: Mapping[int, int | None],
    ) -> None:
        group = self._settings.group_id
        unfinished = {p for p in partitions if p in entries}
        first = {p for p in partitions - unfinished if below[p] is None}
        lost = partitions - unfinished - first
        if first:
            logger.info(
                "reading the catalog for the first time topic=%s partitions=%s "
                "group=%s",
                self._topic,
                sorted(first),
                group,
            )
        if unfinished:
            # The consumer that began the unfinished read has logged it, and
            # counted it if it was a re-read.
            logger.info(
                "catalog read did not finish, reading the topic again from the "
                "start topic=%s partitions=%s group=%s",
                self._topic,
                sorted(unfinished),
                group,
            )
        if lost:
            metrics.CATALOG_RELOADS.inc()
            logger.warning(
                "redis has no catalog, reading the topic again from the start "
                "topic=%s partitions=%s group=%s",
                self._topic,
                sorted(lost),
                group,
            )

    def _committed_offsets(self, partitions: Collection[int]) -> dict[int, int | None]:
        """Return the group's committed offset of each partition, None for none.

        Raises:
            KafkaException: the request timed out, or the broker returned an
                error for a partition.
        """
        requested = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        offsets: dict[int, int | None] = {}
        for tp in self._consumer.committed(
            requested, timeout=_COMMITTED_TIMEOUT_SECONDS
        ):
            if tp.error is not None:
                raise KafkaException(tp.error)
            offsets[tp.partition] = tp.offset if tp.offset >= 0 else None
        return offsets

    def _log_committed_failure(
        self, partitions: Collection[int], exc: KafkaException
    ) -> None:
        logger.warning(
            "catalog committed offsets not read, partitions stay at their "
            "offsets until the next check topic=%s partitions=%s error=%s",
            self._topic,
            sorted(partitions),
            exc,
        )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = {tp.partition for tp in partitions}
        self._assigned |= numbers
        log_partition_change(
            logger, "assigned", self._topic, partitions, self._settings.group_id
        )
        unread: set[int] = set()
        try:
            entries = self._marker.entries(numbers)
            unread = {p for p in numbers if _needs_read(entries.get(p), False)}
            if unread:
                self._start_reads(unread, entries, self._committed_offsets(unread))
        except redis.exceptions.RedisError as exc:
            # The committed offsets stand until a check can read the marker.
            self._next_check = self._clock()
            self._marker_outage.failed(exc, self._settings.poll_timeout_seconds)
            unread = set()
        except KafkaException as exc:
            self._next_check = self._clock()
            self._log_committed_failure(unread, exc)
            unread = set()
        for tp in partitions:
            if tp.partition in unread:
                tp.offset = OFFSET_BEGINNING
        consumer.assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions)
        log_partition_change(
            logger, "revoked", self._topic, partitions, self._settings.group_id
        )

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions)
        log_partition_change(
            logger, "lost", self._topic, partitions, self._settings.group_id
        )

    def _forget(self, partitions: Collection[TopicPartition]) -> None:
        numbers = {tp.partition for tp in partitions}
        self._assigned -= numbers
        self._reloading -= numbers
        self._ended -= numbers
        for partition in numbers:
            self._dead_lettered_below.pop(partition, None)


def _needs_read(entry: PartitionEntry | None, is_reloading: bool) -> bool:
    """Return whether Redis lacks a partition that this consumer is not reloading."""
    if entry is None:
        return True
    return entry.state is not PartitionState.LOADED and not is_reloading


def _started_at(entry: PartitionEntry | None) -> int | None:
    """Return the committed offset that an unfinished read began at, if known."""
    return entry.committed_offset if entry is not None else None


def _highest(*offsets: int | None) -> int | None:
    return max((offset for offset in offsets if offset is not None), default=None)


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


def _is_partition_end(message: Message) -> bool:
    error = message.error()
    return error is not None and error.code() == KafkaError._PARTITION_EOF


def _is_error(message: Message, topic: str) -> bool:
    error = message.error()
    if error is None:
        return False
    if error.code() != KafkaError._PARTITION_EOF:
        logger.warning("consume error topic=%s error=%s", topic, error)
    return True
