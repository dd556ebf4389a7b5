"""Publishing rejected messages on the dead-letter topic (``events.dlq``).

A dead letter carries the raw key and value (base64), the rejection reason and
message, and the source topic, partition and offset, so a person can fix the
producer and replay the message. It is keyed by the original key, so dead
letters of one user stay in one partition and in order. Input that came
without a key (an HTTP request, a file) has a null ``raw_key_base64``; the
HTTP API still keys its dead letter by the body's ``user_id`` when the body
holds a valid one.

The writer counts dead letters itself in ``cartwheel_dead_letters_total`` (by
``service`` and ``reason``), so every consumer reports them the same way and
the caller only counts what it did not send here.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

from confluent_kafka import KafkaError, Message, Producer
from prometheus_client import Counter

from schemas.deadletters import DeadLetter
from schemas.validation import Rejection
from services.common.errors import DeadLetterDeliveryError
from services.common.kafka import raise_if_fatal
from services.common.logging import RepeatFilter
from services.common.stop_request import StopRequest, flush_while_reachable

__all__ = ["DEAD_LETTERS", "DeadLetterWriter"]

logger = logging.getLogger(__name__)

# A flood of bad messages would write a line each. One line per reason and
# topic passes every 10 s, carrying the count of those held back since the
# previous one, and cartwheel_dead_letters_total counts every dead letter.
_letters_logger = logging.getLogger(f"{__name__}.letters")
_letters_logger.addFilter(
    RepeatFilter(interval_seconds=10.0, varying=re.compile(r"\d+"))
)

DEAD_LETTERS = Counter(
    "cartwheel_dead_letters_total",
    "Messages sent to the dead-letter topic, by service and rejection reason",
    ["service", "reason"],
)

_MAX_MESSAGE_CHARS = 1024
# The raw key and value are each cut to this size, so a dead letter stays
# under librdkafka's default message.max.bytes (1,000,000) after base64
# encoding.
_MAX_RAW_BYTES = 256 * 1024
# How long send() waits for room in librdkafka's queue before giving up.
_QUEUE_FULL_TIMEOUT_SECONDS = 10.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class DeadLetterWriter:
    """Publish rejections as :class:`DeadLetter` JSON on the dead-letter topic.

    ``send`` only enqueues the dead letter on the caller's producer. To keep
    at-least-once delivery, call :meth:`flush` before committing the source
    offsets: it waits for every dead letter and raises if one was lost.

    Args:
        producer: the caller's confluent-kafka producer; the writer does not
            own it and never closes it.
        topic: the dead-letter topic, ``events.dlq`` by default settings.
        service: the name of the rejecting service, stored in each dead letter
            and used as a metric label.
        clock: returns the current UTC time; tests inject a fixed one.
        stop: the caller's stop request. Once it is set and the broker is
            gone, :meth:`flush` gives up. None waits the whole timeout.

    Example::

        writer = DeadLetterWriter(producer, "events.dlq", "features")
        result = parse_event(message.value())
        if isinstance(result, Rejection):
            writer.send(
                result,
                raw_key=message.key(),
                raw_value=message.value(),
                source_topic=message.topic(),
                source_partition=message.partition(),
                source_offset=message.offset(),
            )
        writer.flush()  # before committing the source offsets
    """

    def __init__(
        self,
        producer: Producer,
        topic: str,
        service: str,
        *,
        clock: Callable[[], datetime] = _utc_now,
        stop: StopRequest | None = None,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._service = service
        self._clock = clock
        self._stop = stop
        self._failures: list[str] = []

    def send(
        self,
        rejection: Rejection,
        *,
        raw_key: bytes | None,
        raw_value: bytes | None,
        source_topic: str,
        source_partition: int,
        source_offset: int,
    ) -> None:
        """Enqueue one dead letter, keyed by the original message key.

        Raises:
            DeadLetterDeliveryError: when librdkafka's queue stays full for
                10 s, which means the broker is not accepting writes.
        """
        value = self.encode(
            rejection,
            raw_key=raw_key,
            raw_value=raw_value,
            source_topic=source_topic,
            source_partition=source_partition,
            source_offset=source_offset,
        )
        self._produce(raw_key, value)
        self.record(rejection, source_topic, source_partition, source_offset)

    def encode(
        self,
        rejection: Rejection,
        *,
        raw_key: bytes | None,
        raw_value: bytes | None,
        source_topic: str,
        source_partition: int,
        source_offset: int,
    ) -> bytes:
        """Return the dead letter's message value.

        For a caller that produces the letter to :attr:`topic` itself, keyed
        by ``raw_key``, handles its delivery report and then calls
        :meth:`record`; :meth:`send` does all of that. Input that came without
        a key may be keyed by a key the caller derives, as the API does with
        the body's ``user_id``.
        """
        note = "".join(
            f" (raw {name} cut to its first {_MAX_RAW_BYTES} of {len(raw)} bytes)"
            for name, raw in (("key", raw_key), ("value", raw_value))
            if raw is not None and len(raw) > _MAX_RAW_BYTES
        )
        message = rejection.message[: _MAX_MESSAGE_CHARS - len(note)] + note
        letter = DeadLetter(
            reason=rejection.reason,
            message=message,
            source_topic=source_topic,
            source_partition=source_partition,
            source_offset=source_offset,
            raw_key_base64=_encode(raw_key),
            raw_value_base64=_encode(raw_value),
            rejected_at=self._clock(),
            service=self._service,
        )
        return letter.model_dump_json().encode()

    def record(
        self,
        rejection: Rejection,
        source_topic: str,
        source_partition: int,
        source_offset: int,
    ) -> None:
        """Count and log a dead letter handed to the producer."""
        DEAD_LETTERS.labels(service=self._service, reason=rejection.reason).inc()
        _letters_logger.warning(
            "message dead-lettered reason=%s topic=%s partition=%s offset=%s",
            rejection.reason,
            source_topic,
            source_partition,
            source_offset,
        )

    @property
    def topic(self) -> str:
        """The dead-letter topic."""
        return self._topic

    def flush(self, timeout_seconds: float = 30.0) -> None:
        """Wait until every dead letter sent so far is delivered.

        Raises:
            DeadLetterDeliveryError: when a dead letter failed or is still
                queued after ``timeout_seconds``; the source offsets must then
                not be committed.
            BrokerGoneError: the writer's stop request was set and no broker
                accepted connections while messages were queued.
        """
        remaining = flush_while_reachable(self._producer, timeout_seconds, self._stop)
        failures, self._failures = self._failures, []
        if failures:
            raise DeadLetterDeliveryError(
                f"{len(failures)} dead letter(s) to {self._topic!r} failed: "
                f"{failures[0]}; check that the topic exists and the broker is up"
            )
        if remaining:
            raise DeadLetterDeliveryError(
                f"{remaining} message(s) still queued for the broker after "
                f"{timeout_seconds:.0f} s; check that the broker is reachable"
            )

    def _produce(self, key: bytes | None, value: bytes) -> None:
        deadline = time.monotonic() + _QUEUE_FULL_TIMEOUT_SECONDS
        while True:
            try:
                self._producer.produce(
                    self._topic, key=key, value=value, on_delivery=self._on_delivery
                )
                break
            except BufferError as exc:
                if time.monotonic() > deadline:
                    raise DeadLetterDeliveryError(
                        f"the producer queue stayed full for "
                        f"{_QUEUE_FULL_TIMEOUT_SECONDS:.0f} s while sending a dead "
                        f"letter to {self._topic!r}; check that the broker is up"
                    ) from exc
                # Serve delivery reports to free room in the queue.
                self._producer.poll(0.1)
        self._producer.poll(0)

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            return
        logger.error(
            "dead letter delivery failed topic=%s error=%s", message.topic(), error
        )
        self._failures.append(str(error))
        raise_if_fatal(error)


def _encode(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    return base64.b64encode(raw[:_MAX_RAW_BYTES]).decode("ascii")
