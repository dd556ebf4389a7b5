"""The hot-path consumer: events in, features in Redis, then learning and scoring.

Delivery guarantee: at-least-once from Kafka, exactly once in effect on the
features. Offsets are committed synchronously, and only after the batch's
features are in Redis, every stage returned and the producer delivered every
dead letter and training example. A crash or a rebalance replays the batch;
the feature store applies each event id once (see
:mod:`services.common.redis_features`) and hands replays to the stages again,
which are idempotent per ``event_id``.

Ordering: messages are keyed by ``user_id``, so one user's events sit in one
partition and are applied in offset order. A batch may hold several
partitions; each stage sees the batch in the order it was read.

Malformed input: :func:`schemas.validation.parse_event` turns every message
into an event or a rejection; rejections go to the dead-letter topic with
their reason and never stop the consumer. Duplicate event ids are dropped and
counted. While Redis, a stage or the broker fails, the batch is retried with
exponential backoff, the partitions stay paused and nothing is committed.
Redis, Kafka and OS errors are retried without end. Each outage is logged in
a few lines (see :mod:`services.common.outage`), while
``cartwheel_hotpath_batch_retries_total`` counts every attempt. An event on
which the code itself fails ``stage_attempts`` times goes to the dead-letter
topic as ``processing_failed``, so one such event does not stop its
partitions.

Stopping: SIGTERM or SIGINT lets the current batch finish, flush and commit.
When the broker has stopped too, as when a killed ``cartwheel demo`` takes
its broker down with its services, every wait on it gives up once no
bootstrap server accepts a TCP connection (see
:mod:`services.common.stop_request`): the batch's slates, dead letters and
training examples, and the final commit. A frozen broker, which accepts
connections and responds to nothing, gets 10 s for all of them. One WARNING
line states that offsets were not committed, so the next consumer reads
those events again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import redis
from confluent_kafka import (
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from schemas.deadletters import RejectionReason
from schemas.events import Event
from schemas.validation import Rejection
from services.common.deadletters import DeadLetterWriter
from services.common.errors import (
    BrokerGoneError,
    CommitPendingError,
    DeadLetterDeliveryError,
    MessageDeliveryError,
)
from services.common.kafka import consume_available, is_fatal, log_partition_change
from services.common.outage import OutageLog
from services.common.redis_features import (
    AppliedResult,
    EventPosition,
    EventStatus,
    FeatureStore,
)
from services.common.stop_request import (
    StopRequest,
    commit_while_reachable,
    flush_while_reachable,
)
from services.hotpath import metrics
from services.hotpath.batch import (
    Batch,
    count_results,
    decode_batch,
    log_duplicates,
    split_into_waves,
)
from services.hotpath.examples import ExampleWriter
from services.hotpath.lag import ConsumerLag
from services.hotpath.replays import EarlierRunFilter
from services.hotpath.settings import HotPathSettings
from services.hotpath.stages import AppliedEvent, Stage

__all__ = ["HotPathConsumer"]

logger = logging.getLogger(__name__)

_SERVICE = "hotpath"
_FLUSH_TIMEOUT_SECONDS = 10.0
_COMMITTED_TIMEOUT_SECONDS = 10.0
# Errors of Kafka, the network or the disk rather than of the code. They are
# retried without end, so an outage never dead-letters an event.
_KAFKA_ERRORS = (KafkaException, MessageDeliveryError, BufferError)
_INFRASTRUCTURE_ERRORS = (*_KAFKA_ERRORS, OSError)


class HotPathConsumer:
    """Consumes ``events`` in batches, applies features and drives the stages.

    Args:
        settings: the hot path's settings (topics, batch size, backoff).
        consumer: a confluent-kafka consumer built from
            :func:`services.common.kafka.consumer_config` (manual commits).
        producer: the producer for dead letters and training examples.
        store: the feature store.
        stages: run in order on every batch after the features are stored.
            A stage with a ``poll`` method (:class:`PolledStage`) is also
            polled on every loop, with or without events.
        clock: wall-clock Unix seconds, for ``received_at`` and validation.
    """

    def __init__(
        self,
        settings: HotPathSettings,
        consumer: Consumer,
        producer: Producer,
        store: FeatureStore,
        stages: Sequence[Stage] = (),
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._topic = settings.topics.events
        self._consumer = consumer
        self._producer = producer
        self._store = store
        self._stages = list(stages)
        self._stage_polls = [
            poll
            for poll in (getattr(stage, "poll", None) for stage in self._stages)
            if callable(poll)
        ]
        self._stage_stops = [
            stop
            for stop in (getattr(stage, "stop", None) for stage in self._stages)
            if callable(stop)
        ]
        self._clock = clock
        self._stopping = StopRequest(settings.kafka)
        self._dead_letters = DeadLetterWriter(
            producer, settings.topics.dead_letters, _SERVICE, stop=self._stopping
        )
        self._examples = ExampleWriter(producer, settings.topics.training_examples)
        self._is_commit_given_up = False
        # A commit given up on stop still waits, and so would a close.
        self._is_commit_pending = False
        # An outage may outlast a batch that a rebalance abandons, so these
        # live as long as the consumer.
        self._batch_outages = {
            cause: OutageLog(logger, cause, "batch")
            for cause in ("redis", "kafka", "os")
        }
        self._flush_outage = OutageLog(logger, "kafka", "dead-letter flush")
        self._assigned: set[int] = set()
        self._revoked: set[int] = set()
        self._uncommitted: dict[int, int] = {}
        self._lag = ConsumerLag(consumer, self._topic)
        self._earlier_runs = EarlierRunFilter(self._topic)

    def subscribe(self) -> None:
        """Join the consumer group on the events topic, with rebalance callbacks."""
        self._consumer.subscribe(
            [self._topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        logger.info(
            "hot path subscribed topic=%s stages=%s",
            self._topic,
            [stage.name for stage in self._stages],
        )

    def run(self) -> None:
        """Subscribe and process batches until :meth:`stop` is called."""
        self.subscribe()
        try:
            while not self._stopping.is_set():
                self.poll_once()
        finally:
            self.close()

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current batch (thread-safe).

        Stages with a ``stop`` method (:class:`StoppedStage`) get the request too.
        """
        self._stopping.set()
        for stop in self._stage_stops:
            stop()

    def close(self) -> None:
        """Close the stages and the consumer; uncommitted batches are replayed."""
        for stage in self._stages:
            try:
                stage.close()
            except BrokerGoneError:
                self._give_up_commit()
            except MessageDeliveryError as exc:
                logger.warning("stage close: %s stage=%s", exc, stage.name)
            except Exception:
                logger.exception("stage close failed stage=%s", stage.name)
        try:
            flush_while_reachable(
                self._producer, _FLUSH_TIMEOUT_SECONDS, self._stopping
            )
        except BrokerGoneError:
            self._give_up_commit()
        except KafkaException as exc:
            logger.error("producer flush on close failed error=%s", exc)
        if not self._is_commit_pending:
            self._consumer.close()
        logger.info("hot path stopped topic=%s", self._topic)

    def poll_once(self) -> int:
        """Consume, process and commit one batch; return its message count."""
        self._poll_background()
        messages = consume_available(
            self._consumer,
            self._settings.batch_size,
            self._settings.poll_timeout_seconds,
        )
        if not messages:
            return 0
        received_at = self._clock()
        batch = decode_batch(
            messages, received_at, self._topic, on_rejected=self._send_dead_letter
        )
        if not batch.next_offsets:
            return len(messages)
        metrics.BATCH_SIZE.observe(len(messages))
        self._revoked.clear()
        if self._process(batch, received_at) and self._flush(batch):
            self._commit(batch.next_offsets)
        return len(messages)

    def _process(self, batch: Batch, received_at: float) -> bool:
        """Apply and run the stages, retrying until success; False when stopped.

        With stages, the batch runs as a sequence of waves, each a contiguous
        run of events with no user twice, so the slate for a user's event is
        never computed from that user's later events in the same batch.
        Without stages nothing reads the features between events, so the
        whole batch is one wave: the feature store applies each user's events
        in order within one call and leaves the same state in Redis. The
        training examples then differ only in the smoothed item rates, whose
        shop-wide prior the store reads once per call. A retry resumes at the
        first wave that did not finish; its applied events come back as
        redelivered and the stages run again for them.

        A wave that an error of the code (not of Redis, Kafka or the OS) fails
        ``stage_attempts`` times is split into single events. A single event
        that fails as often goes to the dead-letter topic as
        ``processing_failed``, and the batch goes on without it.
        """
        if self._stages:
            waves = split_into_waves(batch.events, batch.positions)
        else:
            waves = [(list(batch.events), list(batch.positions))]
        completed = 0
        failures = 0
        delay = self._settings.retry_initial_seconds
        while not self._stopping.is_set():
            try:
                for index in range(completed, len(waves)):
                    events, positions = waves[index]
                    results = self._apply(events, positions)
                    count_results(results)
                    self._run_stages(results, received_at)
                    completed = index + 1
                    failures = 0
                for outage in self._batch_outages.values():
                    outage.recovered()
                return True
            except BrokerGoneError:
                # A stage gave up its deliveries, so the batch ends uncommitted.
                self._give_up_commit()
                return False
            except redis.exceptions.RedisError as exc:
                cause = "redis"
                self._batch_outages[cause].failed(exc, delay)
            except _INFRASTRUCTURE_ERRORS as exc:
                if is_fatal(exc):
                    # The producer can send nothing more: stop, so that a new
                    # process with a new producer replays the batch.
                    logger.critical("kafka producer failed fatally error=%s", exc)
                    raise
                cause = "kafka" if isinstance(exc, _KAFKA_ERRORS) else "os"
                self._batch_outages[cause].failed(exc, delay)
            except Exception as exc:
                # A failure of the code, not an outage: each one is logged
                # with its traceback, and stage_attempts bounds them per event.
                cause = "stage"
                failures += 1
                logger.exception("batch failed, retrying delay_seconds=%.2f", delay)
                if failures >= self._settings.stage_attempts:
                    failures = 0
                    events, positions = waves[completed]
                    if len(events) > 1:
                        waves[completed : completed + 1] = [
                            ([event], [position])
                            for event, position in zip(events, positions, strict=True)
                        ]
                        logger.warning(
                            "running a failing wave one event at a time events=%d",
                            len(events),
                        )
                    else:
                        self._dead_letter_failed(batch, events[0], positions[0], exc)
                        completed += 1
                        continue
            metrics.RETRIES.labels(cause).inc()
            if not self._wait_paused(delay, batch):
                return False
            delay = min(delay * 2, self._settings.retry_max_seconds)
        return False

    # LIMITATION(L-78): the event's features may be applied already, so the
    # dead letter records the failure but cannot be replayed under its id.
    def _dead_letter_failed(
        self, batch: Batch, event: Event, position: EventPosition, exc: Exception
    ) -> None:
        rejection = Rejection(
            RejectionReason.PROCESSING_FAILED,
            f"event {event.event_id!r} failed {self._settings.stage_attempts} "
            f"times in processing: {type(exc).__name__}: {exc}; no slate was "
            "published for it, and its features may already be applied, so a "
            "replay with the same event_id is dropped as a duplicate",
        )
        message = batch.messages[position]
        batch.rejected.append((message, rejection))
        self._send_dead_letter(message, rejection)
        metrics.EVENTS_PROCESSED.labels(event.event_type.value, "failed").inc()
        logger.error(
            "event dead-lettered after failing every attempt event_id=%s "
            "partition=%s offset=%s",
            event.event_id,
            position.partition,
            position.offset,
        )

    def _apply(
        self, events: Sequence[Event], positions: Sequence[EventPosition]
    ) -> list[AppliedResult]:
        tried_below = self._earlier_runs.start_attempt(positions)
        started = time.perf_counter()
        results = self._store.apply_batch(events, positions)
        metrics.REDIS_APPLY_SECONDS.observe(time.perf_counter() - started)
        log_duplicates(results)
        return self._earlier_runs.filter(results, tried_below)

    def _run_stages(self, results: Sequence[AppliedResult], received_at: float) -> None:
        applied = []
        for result in results:
            if result.status is EventStatus.DUPLICATE or result.position is None:
                continue
            # LIMITATION(L-22): a redelivered event has lost its before-snapshot,
            # so it gets no training example and the stages see current features.
            if result.status.is_new and self._settings.is_emitting_training_examples:
                self._examples.send(result)
            applied.append(
                AppliedEvent(
                    event=result.event,
                    user_features=result.user_features,
                    item_features=result.item_features,
                    received_at=received_at,
                    partition=result.position.partition,
                    offset=result.position.offset,
                )
            )
        if not applied:
            return
        for stage in self._stages:
            started = time.perf_counter()
            stage.process(applied)
            metrics.STAGE_SECONDS.labels(stage.name).observe(
                time.perf_counter() - started
            )

    def _flush(self, batch: Batch) -> bool:
        """Wait until the broker has every message of the batch; False if stopped.

        The first flush runs even when a stop was requested during the batch,
        because the batch's slates are already sent and its offsets are then
        committed, so the next owner does not publish them again. It ends
        early only when no broker accepts connections. The retries after a
        failed delivery end at a stop.
        """
        delay = self._settings.retry_initial_seconds
        while True:
            try:
                self._dead_letters.flush(_FLUSH_TIMEOUT_SECONDS)
                self._flush_outage.recovered()
                return True
            except BrokerGoneError:
                self._give_up_commit()
                return False
            except DeadLetterDeliveryError as exc:
                self._flush_outage.failed(exc, delay)
                metrics.RETRIES.labels("kafka").inc()
                # A failed dead letter is gone from the producer: send them all
                # again (the dead-letter topic is at-least-once).
                for message, rejection in batch.rejected:
                    self._send_dead_letter(message, rejection)
            if not self._wait_paused(delay, batch):
                return False
            delay = min(delay * 2, self._settings.retry_max_seconds)

    def _poll_background(self) -> None:
        """Serve the producers' callbacks and log lines, poll the stages, set the lag.

        librdkafka's lines reach the logger only when a client is polled, so
        this runs at least once per poll timeout, also while backing off.
        """
        self._producer.poll(0)
        self._lag.refresh()
        for poll in self._stage_polls:
            poll()

    def _wait_paused(self, delay: float, batch: Batch) -> bool:
        """Back off with the partitions paused, serving rebalances meanwhile.

        Returns:
            False when the consumer is stopping or lost a partition of the
            batch (its new owner replays it), True to retry.
        """
        partitions = [TopicPartition(self._topic, p) for p in sorted(self._assigned)]
        # LIMITATION(L-91): a paused partition fetches nothing, so its cached high
        # watermark, and with it the lag gauge, stays put until the retry ends.
        self._consumer.pause(partitions)
        try:
            deadline = time.monotonic() + delay
            while not self._stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._poll_background()
                # Polling keeps the group membership alive; paused partitions
                # return no messages.
                for message in self._consumer.consume(1, min(remaining, 0.5)):
                    if message.error() is None:
                        self._consumer.seek(
                            TopicPartition(
                                self._topic,
                                message.partition() or 0,
                                message.offset() or 0,
                            )
                        )
        finally:
            self._consumer.resume(partitions)
        lost = self._revoked & set(batch.next_offsets)
        if lost:
            logger.warning(
                "partitions revoked during retry partitions=%s", sorted(lost)
            )
            return False
        return not self._stopping.is_set()

    def _commit(self, next_offsets: dict[int, int]) -> None:
        offsets = [
            TopicPartition(self._topic, partition, offset)
            for partition, offset in sorted(next_offsets.items())
            if partition not in self._revoked
        ]
        if not offsets:
            return
        if self._stopping.is_broker_gone() or self._stopping.is_overdue():
            self._give_up_commit()
            return
        try:
            commit_while_reachable(self._consumer, offsets, self._stopping)
        except CommitPendingError:
            self._is_commit_pending = True
            self._give_up_commit()
            return
        except KafkaException as exc:
            # Kept for the next revoke. If that commit fails too, the next
            # owner of the partition replays the batch.
            logger.warning("offset commit failed error=%s", exc)
            self._uncommitted.update(next_offsets)
            return
        for partition in next_offsets:
            self._uncommitted.pop(partition, None)
        self._lag.committed({tp.partition: tp.offset for tp in offsets})

    def _give_up_commit(self) -> None:
        """Log once that offsets stay uncommitted because the broker is gone or slow."""
        if self._is_commit_given_up:
            return
        self._is_commit_given_up = True
        cause = (
            "broker refuses connections"
            if self._stopping.is_broker_gone()
            else "broker did not respond in time"
        )
        logger.warning(
            "%s, stopping without committing offsets; "
            "the next consumer reads the events since the last commit again "
            "bootstrap=%s group=%s",
            cause,
            self._stopping.bootstrap,
            self._settings.group_id,
        )

    def _send_dead_letter(self, message: Message, rejection: Rejection) -> None:
        self._dead_letters.send(
            rejection,
            raw_key=message.key(),
            raw_value=message.value(),
            source_topic=message.topic() or self._topic,
            source_partition=message.partition() or 0,
            source_offset=message.offset() or 0,
        )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned.update(tp.partition for tp in partitions)
        # A partition paused by a retry before the rebalance starts fetching again.
        consumer.resume(partitions)
        log_partition_change(
            logger, "assigned", self._topic, partitions, self._settings.group_id
        )
        if not partitions:
            return
        resume_offsets = self._resume_offsets(consumer, partitions)
        numbers = [tp.partition for tp in partitions]
        self._lag.assigned(numbers, resume_offsets)
        self._earlier_runs.assigned(numbers, resume_offsets)
        # Stages that implement AssignedStage prepare their per-partition state.
        for hook in (getattr(stage, "assigned", None) for stage in self._stages):
            if callable(hook):
                try:
                    hook(resume_offsets or {})
                except Exception:
                    # The stage only starts these partitions with less state,
                    # but raising here would end the consumer's poll loop.
                    logger.exception("stage failed to prepare assigned partitions")

    def _resume_offsets(
        self, consumer: Consumer, partitions: list[TopicPartition]
    ) -> dict[int, int] | None:
        """Return the committed offset of each partition that has one.

        None when the offsets could not be read.
        """
        try:
            committed = consumer.committed(
                partitions, timeout=_COMMITTED_TIMEOUT_SECONDS
            )
        except KafkaException as exc:
            logger.warning("reading committed offsets failed error=%s", exc)
            return None
        return {tp.partition: tp.offset for tp in committed if tp.offset >= 0}

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # A processed batch is committed when it finishes; only a batch whose
        # commit failed is pending here. A batch still retrying is abandoned.
        pending = [
            TopicPartition(self._topic, tp.partition, self._uncommitted[tp.partition])
            for tp in partitions
            if tp.partition in self._uncommitted
        ]
        if pending and (self._stopping.is_broker_gone() or self._stopping.is_overdue()):
            self._give_up_commit()
        elif pending:
            # LIMITATION(L-90): this commit runs inside close() when stopping,
            # and close() would wait for it even if it were given up, so a
            # frozen broker blocks it without a time limit.
            try:
                consumer.commit(offsets=pending, asynchronous=False)
            except KafkaException as exc:
                logger.warning("offset commit on revoke failed error=%s", exc)
        self._forget(partitions)
        log_partition_change(
            logger, "revoked", self._topic, partitions, self._settings.group_id
        )

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions)
        log_partition_change(
            logger,
            "lost",
            self._topic,
            partitions,
            self._settings.group_id,
            is_commit_given_up=self._is_commit_given_up,
        )

    def _forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._uncommitted.pop(tp.partition, None)
            self._assigned.discard(tp.partition)
            self._revoked.add(tp.partition)
        self._lag.forget(tp.partition for tp in partitions)
        self._earlier_runs.forget(tp.partition for tp in partitions)
