"""Publish validated shop events on the ``events`` topic.

Each event is validated with :func:`schemas.validation.parse_event` before it
leaves the process and is sent as canonical JSON keyed by ``user_id``, so one
user's events stay in order in one partition. The producer is idempotent with
``acks=all``, which drops the duplicates that librdkafka's retries would
otherwise create. Delivery is reported per event, through a
callback and a future. The site keeps at-least-once delivery by treating an
event as published only once its future resolved.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from schemas.deadletters import RejectionReason
from schemas.events import Event
from schemas.validation import Rejection, parse_event
from services.client.arguments import require_int, require_timeout
from services.common.errors import (
    EventDeliveryError,
    InvalidEventError,
    TopicMissingError,
)
from services.common.kafka import producer_config, wait_for_broker
from services.common.settings import KafkaSettings

__all__ = ["DeliveryReport", "EventProducer"]

logger = logging.getLogger(__name__)

_QUEUE_FULL_WAIT_SECONDS = 1.0

# The range of librdkafka's linger.ms (queue.buffering.max.ms).
_MAX_LINGER_MS = 900_000


@dataclass(frozen=True)
class DeliveryReport:
    """The outcome of sending one event.

    Attributes:
        event_id: the event's id.
        topic: the topic it was sent to.
        partition: its partition, or -1 when delivery failed.
        offset: its offset, or -1 when delivery failed.
        error: librdkafka's error text, or None when the broker stored it.
    """

    event_id: str
    topic: str
    partition: int
    offset: int
    error: str | None = None

    @property
    def is_delivered(self) -> bool:
        return self.error is None


DeliveryCallback = Callable[[DeliveryReport], None]


class EventProducer:
    """Validate shop events and publish them to Kafka, keyed by ``user_id``.

    The constructor checks that a broker responds and that the topic exists,
    because a missing topic may silently swallow writes on some brokers.
    Delivery reports arrive while :meth:`send`, :meth:`poll`, :meth:`flush`
    or :meth:`close` runs, so call :meth:`poll` now and then in a long-lived
    process. Not thread-safe for concurrent ``close``; ``send`` may be called
    from several threads.

    Args:
        kafka: how to reach the cluster (``CARTWHEEL_KAFKA_*``).
        topic: the events topic; pass ``TopicSettings().events`` to follow
            ``CARTWHEEL_TOPIC_EVENTS`` as the services do.
        on_delivery: called once per event with its :class:`DeliveryReport`.
        connect_timeout_seconds: how long to wait for the broker at start,
            above 0 and at most 2147483 (librdkafka's limit, about 24 days).
        linger_ms: how long librdkafka batches messages before sending.

    Raises:
        ValueError: ``connect_timeout_seconds`` is not a number above 0 and
            at most 2147483, or ``linger_ms`` is not an integer from 0 to
            900000.
        BrokerUnreachableError: no broker answered at ``kafka.bootstrap``
            within ``connect_timeout_seconds``.
        TopicMissingError: the topic does not exist.

    Example::

        from services.client import EventProducer
        from services.common.settings import KafkaSettings

        with EventProducer(KafkaSettings(bootstrap="127.0.0.1:19092")) as producer:
            future = producer.send({
                "event_id": "e-1",
                "event_type": "click",
                "user_id": "u-1",
                "item_id": "i-1",
                "event_time": "2019-10-01T00:00:00Z",
            })
        report = future.result()  # close() flushed, so the report is ready
        print(report.partition, report.offset)
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        topic: str = "events",
        on_delivery: DeliveryCallback | None = None,
        connect_timeout_seconds: float = 10.0,
        linger_ms: int = 5,
    ) -> None:
        require_timeout(
            "connect_timeout_seconds", connect_timeout_seconds, is_zero_allowed=False
        )
        require_int(
            "linger_ms",
            linger_ms,
            0,
            _MAX_LINGER_MS,
            f"an integer from 0 to {_MAX_LINGER_MS}, the range that librdkafka accepts",
        )
        wait_for_broker(kafka, timeout_seconds=connect_timeout_seconds)
        self._topic = topic
        self._is_closed = False
        self._on_delivery = on_delivery
        self._producer = Producer(
            {
                **producer_config(kafka, linger_ms=linger_ms),
                # Route librdkafka's own log lines to Python logging.
                "logger": logging.getLogger("librdkafka"),
            }
        )
        self._check_topic(kafka, connect_timeout_seconds)

    def send(
        self, event: Event | Mapping[str, Any], *, now: datetime | None = None
    ) -> Future[DeliveryReport]:
        """Validate one event and enqueue it for the broker.

        Args:
            event: an :class:`Event`, or a mapping with the event's JSON fields
                (``event_time`` may be a tz-aware datetime or an RFC 3339 string).
            now: the clock used for the future-time check; defaults to now.

        Returns:
            A future that resolves to the event's DeliveryReport, or raises
            EventDeliveryError when the broker did not store it.

        Raises:
            InvalidEventError: the event failed validation, or it is neither
                an Event nor a mapping, or a field's value is not a JSON value
                or a tz-aware datetime; its ``rejection`` contains the reason
                code and a message naming the field.
            EventDeliveryError: librdkafka's queue stayed full, so the event
                was not queued.
            ValueError: ``now`` is neither None nor a tz-aware datetime.
            RuntimeError: the producer is closed.
        """
        if self._is_closed:
            raise RuntimeError(
                f"the event producer of topic {self._topic!r} is closed; build a "
                "new EventProducer to send more events"
            )
        _require_aware_time("now", now)
        raw = _to_json(event)
        result = parse_event(raw, now=now)
        if isinstance(result, Rejection):
            raise InvalidEventError(result)

        future: Future[DeliveryReport] = Future()
        value = result.model_dump_json(exclude_none=True).encode()
        self._produce(result, value, future)
        self._producer.poll(0)
        return future

    def poll(self, timeout_seconds: float = 0.0) -> int:
        """Serve delivery reports; return how many were served."""
        return int(self._producer.poll(timeout_seconds))

    def flush(self, timeout_seconds: float = 30.0) -> None:
        """Wait until every event sent so far has a delivery report.

        Raises:
            EventDeliveryError: events were still queued after the timeout.
        """
        remaining = self._producer.flush(timeout_seconds)
        if remaining:
            raise EventDeliveryError(
                f"{remaining} event(s) still queued for {self._topic!r} after "
                f"{timeout_seconds:.0f} s; check that the broker is reachable"
            )

    def close(self, timeout_seconds: float = 30.0) -> None:
        """Flush; :meth:`send` raises RuntimeError afterwards.

        Raises:
            EventDeliveryError: events were still queued after the timeout.
                The producer is closed all the same.
        """
        self._is_closed = True
        self.flush(timeout_seconds)

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _produce(
        self, event: Event, value: bytes, future: Future[DeliveryReport]
    ) -> None:
        def report(error: KafkaError | None, message: Message) -> None:
            self._report(event.event_id, error, message, future)

        key = event.user_id.encode()
        try:
            self._producer.produce(
                self._topic, key=key, value=value, on_delivery=report
            )
            return
        except BufferError:
            # The local queue is full, so serve reports to make room and retry once.
            self._producer.poll(_QUEUE_FULL_WAIT_SECONDS)
        try:
            self._producer.produce(
                self._topic, key=key, value=value, on_delivery=report
            )
        except BufferError as exc:
            raise EventDeliveryError(
                f"event {event.event_id!r} was not queued because the producer "
                f"queue stayed full for {_QUEUE_FULL_WAIT_SECONDS:.0f} s; the broker "
                "is slow or unreachable, so retry later or call flush()"
            ) from exc

    def _report(
        self,
        event_id: str,
        error: KafkaError | None,
        message: Message,
        future: Future[DeliveryReport],
    ) -> None:
        if error is None:
            delivery = DeliveryReport(
                event_id, self._topic, message.partition() or 0, message.offset() or 0
            )
            future.set_result(delivery)
        else:
            logger.error(
                "event delivery failed event_id=%s topic=%s error=%s",
                event_id,
                self._topic,
                error,
            )
            delivery = DeliveryReport(event_id, self._topic, -1, -1, str(error))
            future.set_exception(
                EventDeliveryError(
                    f"event {event_id!r} was not stored in {self._topic!r}: {error}"
                )
            )
        if self._on_delivery is not None:
            self._on_delivery(delivery)

    def _check_topic(self, kafka: KafkaSettings, timeout_seconds: float) -> None:
        try:
            topics = self._producer.list_topics(timeout=timeout_seconds).topics
        except KafkaException as exc:
            raise TopicMissingError(
                f"listing topics at {kafka.bootstrap} failed: {exc}"
            ) from exc
        if self._topic not in topics:
            raise TopicMissingError(
                f"topic {self._topic!r} does not exist at {kafka.bootstrap}; "
                "create it with 'cartwheel topics create'"
            )


def _require_aware_time(name: str, value: datetime | None) -> None:
    """Raise ValueError unless ``value`` is None or a tz-aware datetime."""
    is_aware = isinstance(value, datetime) and value.utcoffset() is not None
    if value is not None and not is_aware:
        raise ValueError(
            f"{name}={value!r}; expected None or a tz-aware datetime, such as "
            "datetime.now(UTC)"
        )


def _to_json(event: Event | Mapping[str, Any]) -> bytes:
    """Return the event as JSON, with datetimes as RFC 3339 UTC strings.

    Raises:
        InvalidEventError: ``event`` is neither an Event nor a mapping, or a
            field's value has no JSON form.
    """
    if isinstance(event, Event):
        return event.model_dump_json().encode()
    if not isinstance(event, Mapping):
        raise InvalidEventError(
            Rejection(
                RejectionReason.NOT_AN_OBJECT,
                f"event is a {type(event).__name__}; expected an Event or a "
                "mapping of the event's JSON fields, such as a dict",
            )
        )
    for name, value in event.items():
        try:
            json.dumps(value, default=_encode_time)
        except _UnencodableValue as exc:
            raise InvalidEventError(_unencodable(name, exc.value)) from None
        except (TypeError, ValueError, RecursionError) as exc:
            # A tuple key inside a dict, a list that contains itself, an int
            # over Python's digit limit or nesting deeper than the stack.
            raise InvalidEventError(
                Rejection(
                    RejectionReason.INVALID_JSON,
                    f"field {name!r} has no JSON form: {exc}; use string keys, "
                    "JSON values that do not contain themselves and ints of at "
                    f"most {sys.get_int_max_str_digits()} digits",
                )
            ) from None
    try:
        return json.dumps(dict(event), default=_encode_time).encode()
    except (TypeError, ValueError) as exc:
        # Left for a top-level key such as a tuple.
        raise InvalidEventError(
            Rejection(
                RejectionReason.INVALID_JSON,
                f"event has no JSON form: {exc}; use string keys and JSON values",
            )
        ) from None


class _UnencodableValue(TypeError):
    """Raised by :func:`_encode_time` for a value that has no JSON form."""

    def __init__(self, value: object) -> None:
        super().__init__(f"{type(value).__name__} value has no JSON form")
        self.value = value


def _encode_time(value: object) -> str:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    raise _UnencodableValue(value)


def _unencodable(name: object, value: object) -> Rejection:
    """Return the rejection of field ``name``, whose ``value`` has no JSON form."""
    value_text = repr(value)[:80]
    if isinstance(value, datetime):
        return Rejection(
            RejectionReason.INVALID_TIME,
            f"field {name!r} is a naive datetime {value_text}; expected a tz-aware "
            "datetime or an RFC 3339 string with a UTC offset",
        )
    return Rejection(
        RejectionReason.WRONG_TYPE,
        f"field {name!r} has the {type(value).__name__} value {value_text}, which "
        "has no JSON form; expected a str, int, float, bool, None, list or dict "
        "(convert it first, such as with float() or int()) or a tz-aware datetime",
    )
