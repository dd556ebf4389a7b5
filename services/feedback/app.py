"""The feedback app: a Faust worker that joins published slates with later events.

Delivery: at-least-once. Faust commits a message's offset after its batch was
applied in Redis. Redis keeps the ids of each user's recent slates and events
(four times ``max_recent_events + max_recent_slates``), and a redelivered
message whose id is among them changes nothing, so the counts are exactly once
in effect for redeliveries within that horizon.

Ordering: slates and events are keyed by ``user_id`` on co-partitioned topics,
so one worker sees one user's events in the order they were produced. Slates
and events of one user may interleave in any order, and the join gives the same
counts either way.

Redis outages: a batch that fails in Redis is applied again with a backoff
(``CARTWHEEL_FEEDBACK_RETRY_INITIAL_SECONDS`` doubling up to
``CARTWHEEL_FEEDBACK_RETRY_MAX_SECONDS``) until it succeeds or the worker
stops, so no offset is committed past a message that was not applied. A
worker asked to stop while a batch fails exits at once without committing
it, and a restarted worker reads it again. A failed ratio export keeps the
gauges as they were until the next one. Each outage is logged in a few lines
(see :mod:`services.common.outage`), while
``cartwheel_feedback_redis_retries_total`` counts every failed attempt.

Malformed input: a message that is not a valid slate or event is counted in
``cartwheel_feedback_messages_total{outcome="invalid"}``, logged with its
topic, partition and offset, and skipped. The hot path dead-letters invalid
events before they reach here, so this counter stays at zero unless a producer
writes to the topics directly.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
import redis
import redis.asyncio
from faust.types import EventT
from pydantic import ValidationError

from schemas.events import Event
from schemas.recommendations import Slate, Surface
from services.common.logging import RepeatFilter
from services.common.outage import OutageLog
from services.common.settings import KafkaSettings
from services.feedback import metrics
from services.feedback.reader import outcome_counts, outcome_ratios
from services.feedback.settings import FeedbackSettings
from services.feedback.tables import Applied, FeedbackTables
from services.feedback.transport import FeedbackTransport

__all__ = ["FeedbackProcessor", "create_app", "faust_credentials"]

logger = logging.getLogger(__name__)

# How often a Redis retry's pause checks whether the worker is asked to stop.
_STOP_CHECK_SECONDS = 0.2


# One line per topic passes every 10 s, with the count of those held back.
# cartwheel_feedback_messages_total{outcome="invalid"} counts every one.
_invalid_logger = logging.getLogger(f"{__name__}.invalid")
_invalid_logger.addFilter(
    RepeatFilter(interval_seconds=10.0, varying=re.compile(r"\d+"))
)


class FeedbackProcessor:
    """Parse batches of slates and events, apply them and export the results.

    Args:
        settings: the feedback app's settings.
        should_stop: returns True once the worker is asked to stop.
        exit_now: ends the process at once with the given status. It is
            called when the worker is asked to stop while Redis fails a batch.
    """

    def __init__(
        self,
        settings: FeedbackSettings,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        exit_now: Callable[[int], object] = os._exit,
    ) -> None:
        self._settings = settings
        self._should_stop = should_stop
        self._exit_now = exit_now
        self._events_topic = settings.topics.events
        self._tables: FeedbackTables | None = None
        self._exported: set[tuple[str, str, str]] = set()
        self._batch_outage = OutageLog(logger, "redis", "batch")
        self._export_outage = OutageLog(logger, "redis", "ratio export")

    async def process(self, messages: Sequence[tuple[str, int, int, bytes]]) -> int:
        """Apply one batch of (topic, partition, offset, value) messages in order.

        Returns:
            the number of outcomes newly counted.
        """
        records: list[Slate | Event] = []
        for topic, partition, offset, value in messages:
            record = self._parse(topic, partition, offset, value)
            if record is not None:
                records.append(record)
        started = time.perf_counter()
        applied = await self._apply_until_done(records)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.MESSAGES.labels("duplicate").inc(applied.duplicates)
        for credit in applied.credits:
            metrics.OUTCOMES.labels(
                credit.surface, credit.model_version, credit.outcome.value
            ).inc()
        return len(applied.credits)

    async def _apply_until_done(self, records: Sequence[Slate | Event]) -> Applied:
        # Each message's effects are applied atomically and remembered by id,
        # so applying a batch again after a failure counts nothing twice in
        # Redis.
        # LIMITATION(L-84): outcomes of messages applied before the failure
        # were not returned, so cartwheel_feedback_outcomes_total misses them.
        # The ratio gauges, read from Redis, do not.
        delay = self._settings.retry_initial_seconds
        while True:
            try:
                applied = await self._get_tables().apply(records)
            except redis.exceptions.RedisError as exc:
                metrics.REDIS_RETRIES.labels("batch").inc()
                self._batch_outage.failed(exc, delay)
            else:
                self._batch_outage.recovered()
                return applied
            await self._pause(delay)
            if self._should_stop():
                self._stop_without_commit(len(records))
            delay = min(delay * 2, self._settings.retry_max_seconds)

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when the worker is asked to stop."""
        deadline = time.monotonic() + seconds
        while not self._should_stop():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, _STOP_CHECK_SECONDS))

    def _stop_without_commit(self, messages: int) -> None:
        """End the process while a batch waits for Redis, committing nothing.

        Faust waits for the batch before it stops, and a batch that leaves
        its agent in any way is acknowledged and then committed. Ending the
        process at once keeps the batch's offsets where they are, so a
        restarted worker reads it again.
        """
        logger.warning(
            "stop requested while redis fails, exiting without committing the "
            "batch messages=%d",
            messages,
        )
        logging.shutdown()
        self._exit_now(0)

    def export_ratios(self) -> None:
        """Recompute the outcome-ratio gauges from the counts in Redis (blocking).

        When Redis fails, the gauges keep their values until the next export.
        """
        try:
            self._export_ratios()
        except redis.exceptions.RedisError as exc:
            metrics.REDIS_RETRIES.labels("ratio_export").inc()
            self._export_outage.failed(exc, self._settings.ratio_refresh_seconds)
            return
        self._export_outage.recovered()

    def _export_ratios(self) -> None:
        since = datetime.now(UTC) - timedelta(
            seconds=self._settings.ratio_lookback_seconds
        )
        client = redis.Redis.from_url(self._settings.redis.url.get_secret_value())
        try:
            counts = outcome_counts(client, self._settings.redis.key_prefix, since)
        finally:
            client.close()
        ratios = outcome_ratios(counts)
        current = {(s, m, o.value) for s, m, o in ratios}
        for labels in self._exported - current:
            metrics.OUTCOME_RATIO.remove(*labels)
        for (surface, model_version, outcome), ratio in ratios.items():
            metrics.OUTCOME_RATIO.labels(surface, model_version, outcome.value).set(
                ratio
            )
        self._exported = current

    async def close(self) -> None:
        """Close the Redis connection, if one was opened."""
        if self._tables is not None:
            await self._tables.close()
            self._tables = None

    def _get_tables(self) -> FeedbackTables:
        # The asyncio client must be created on the worker's event loop.
        if self._tables is None:
            client = redis.asyncio.Redis.from_url(
                self._settings.redis.url.get_secret_value()
            )
            self._tables = FeedbackTables(client, self._settings)
        return self._tables

    def _parse(
        self, topic: str, partition: int, offset: int, value: bytes
    ) -> Slate | Event | None:
        # Strict JSON mode, as the hot path reads events and sites read
        # slates, so that the JSON Schemas and every reader agree.
        try:
            if topic == self._events_topic:
                record: Slate | Event = Event.model_validate_json(value, strict=True)
            else:
                record = Slate.model_validate_json(value, strict=True)
        except ValidationError as exc:
            metrics.MESSAGES.labels("invalid").inc()
            _invalid_logger.warning(
                "invalid message skipped topic=%s partition=%s offset=%s errors=%s",
                topic,
                partition,
                offset,
                exc.error_count(),
            )
            return None
        metrics.MESSAGES.labels("event" if isinstance(record, Event) else "slate").inc()
        return record


def faust_credentials(kafka: KafkaSettings) -> Any:
    """Translate the shared Kafka security settings into Faust credentials.

    Returns:
        None for PLAINTEXT, an SSL context for SSL, or SASL credentials. The
        SSL context contains the client certificate and key when they are set.
    """
    context = None
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        cafile = str(kafka.ssl_ca_location) if kafka.ssl_ca_location else None
        context = ssl.create_default_context(cafile=cafile)
        if kafka.ssl_certificate_location is not None:
            key_password = kafka.ssl_key_password
            context.load_cert_chain(
                kafka.ssl_certificate_location,
                kafka.ssl_key_location,
                password=(
                    key_password.get_secret_value()
                    if key_password is not None
                    else None
                ),
            )
    if kafka.security_protocol == "SSL":
        return context
    if kafka.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        password = kafka.sasl_password
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=password.get_secret_value() if password is not None else None,
            mechanism=kafka.sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    return None


def create_app(settings: FeedbackSettings) -> tuple[faust.App, FeedbackProcessor]:
    """Build the Faust app, its join agent and its ratio-export timer."""
    app = faust.App(
        settings.app_id,
        broker=[
            f"kafka://{address}" for address in settings.kafka.bootstrap.split(",")
        ],
        broker_credentials=faust_credentials(settings.kafka),
        # A short session moves a dead worker's partitions within seconds.
        broker_session_timeout=3.0,
        broker_heartbeat_interval=0.5,
        # Redelivered messages are harmless (see the module docstring), and
        # aiokafka cannot obtain a producer id from every broker (Tansu 0.6).
        processing_guarantee="at_least_once",
        producer_linger=0.0,
        # Frequent commits bound how much is redelivered after a crash.
        broker_commit_interval=settings.commit_interval_seconds,
        consumer_auto_offset_reset="earliest",
        # Topics are created by 'cartwheel topics create' with their partition
        # counts; the app only checks them, and needs no leader topic.
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=False,
        datadir=str(settings.data_dir),
        autodiscover=False,
    )
    # Set before the first topic is declared, which creates the default one.
    app.transport = FeedbackTransport(app.conf.broker_consumer, app)
    names = [settings.topics.events]
    names += [settings.topics.recommendations(surface.value) for surface in Surface]
    channel = app.topic(*names, key_serializer="raw", value_serializer="raw")
    processor = FeedbackProcessor(settings, should_stop=lambda: app.should_stop)

    # LIMITATION(L-73): exact counts are tested with one worker only; the
    # Redis scripts are atomic per message, but several Faust workers on one
    # group are untested because their rebalances misbehave on Tansu 0.6.
    @app.agent(channel, name="feedback-join")
    async def join(stream: Any) -> None:
        # faust.StreamT does not declare take_events, which faust.Stream has.
        batches = stream.take_events(
            settings.batch_size, within=settings.batch_wait_seconds
        )
        async for batch in batches:
            await processor.process(_messages(batch))

    @app.timer(interval=settings.ratio_refresh_seconds)  # type: ignore[untyped-decorator]
    async def export_ratios() -> None:
        await asyncio.to_thread(processor.export_ratios)

    # Faust's signal stubs reject coroutine receivers that Faust itself awaits.
    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def log_assigned(sender: Any, *args: Any, **kwargs: Any) -> None:
        logger.info("partitions assigned partitions=%s", _describe(args[0]))

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def log_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
        logger.info("partitions revoked partitions=%s", _describe(args[0]))

    return app, processor


def _describe(partitions: set[Any]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)


def _messages(batch: Sequence[EventT[bytes]]) -> list[tuple[str, int, int, bytes]]:
    return [
        (
            event.message.topic,
            event.message.partition,
            event.message.offset,
            event.message.value or b"",
        )
        for event in batch
    ]
