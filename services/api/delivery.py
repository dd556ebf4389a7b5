"""Producing events from HTTP requests: the topic check and delivery reports.

:class:`Deliveries` lets a request await its message's delivery report on the
event loop, and :class:`TopicCheck` makes sure the events topic exists before
the first event is produced. :func:`unconfirmed` and
:func:`dead_letter_unconfirmed` word the detail of a response for a message
that the broker did not acknowledge, and :func:`delivery_state` returns
whether such a message may be stored, for a log line.

Both report each broker failure and success to one
:class:`~services.common.outage.OutageLog`, so an outage takes a few lines
however many requests it fails. They call it on the event loop only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from fastapi.concurrency import run_in_threadpool

from services.api.readiness import DeliveryOutcomes
from services.common.errors import BrokerGoneError
from services.common.outage import OutageLog
from services.common.stop_request import StopRequest, flush_while_reachable

__all__ = [
    "Deliveries",
    "TopicCheck",
    "dead_letter_unconfirmed",
    "delivery_state",
    "flush_on_stop",
    "kafka_reason",
    "unconfirmed",
]

logger = logging.getLogger(__name__)

# How long a stopping API waits for the broker to take its queued messages.
_STOP_FLUSH_SECONDS = 10.0


class TopicCheck:
    """A check that the events topic exists, repeated until the broker lists it.

    The broker may store a write to a missing topic by creating it with its
    default partition count, so an event is only produced once the topic is
    known to exist. A topic seen once is not checked again.

    Args:
        producer: the producer whose topic list is read.
        topic: the events topic.
        timeout_seconds: how long one topic list may take.
        outage: where a broker that does not list its topics is reported;
            the next delivery that succeeds ends that outage.
    """

    def __init__(
        self,
        producer: Producer,
        topic: str,
        timeout_seconds: float,
        outage: OutageLog,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout = timeout_seconds
        self._outage = outage
        self._is_known = False
        self._pending: asyncio.Future[str | None] | None = None

    # NOTE: a topic deleted while the API runs is not noticed, and the broker
    # may acknowledge events written to it (README L-77 covers broker restarts).
    async def problem(self) -> str | None:
        """Return None when the topic exists, else why no event can be produced.

        Requests that arrive while the metadata request is in flight wait
        for that one request, so an unreachable broker blocks one worker
        thread, not one per request.
        """
        if self._is_known:
            return None
        if self._pending is None or self._pending.done():
            self._pending = asyncio.ensure_future(self._check())
        return await asyncio.shield(self._pending)

    async def _check(self) -> str | None:
        try:
            metadata = await run_in_threadpool(
                self._producer.list_topics, timeout=self._timeout
            )
        except KafkaException as exc:
            logger.debug("topic check failed topic=%s error=%s", self._topic, exc)
            self._outage.failed(exc)
            return (
                f"the broker did not list its topics within {self._timeout:g} s "
                f"({kafka_reason(exc)}); retry"
            )
        topic = metadata.topics.get(self._topic)
        self._is_known = topic is not None and topic.error is None
        if self._is_known:
            return None
        return (
            f"topic {self._topic!r} is missing; create it with "
            "'cartwheel topics create', then retry"
        )


class Deliveries:
    """A producer front whose callers await delivery reports on the event loop.

    A daemon thread serves the producer's delivery reports, and each report
    settles the future of the request that produced its message. A request
    waiting out a broker outage therefore blocks no worker thread, and the
    slate reads keep theirs. A request that stops waiting leaves its message
    with the producer, which may still deliver it. A client that then retries
    with the same event id causes no double count, because the feature store
    drops the repeat. Every outcome, a late report included, goes to
    ``outcomes`` for readiness. The outcome that a request awaited also goes
    to ``outage``, so a broker outage is logged in a few lines.
    """

    def __init__(
        self, producer: Producer, outcomes: DeliveryOutcomes, outage: OutageLog
    ) -> None:
        self._producer = producer
        self._outcomes = outcomes
        self._outage = outage
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        """Start serving delivery reports; :meth:`deliver` also starts it."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._poll, name="api-delivery-reports", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        """Stop serving delivery reports after the current poll."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5.0)

    async def deliver(
        self, topic: str, key: bytes | None, value: bytes, timeout: float
    ) -> Message:
        """Produce one message and return it once the broker stored it.

        Raises:
            KafkaException: the delivery failed, or no report came within
                ``timeout`` seconds (``_MSG_TIMED_OUT``).
            BufferError: the producer's queue is full.
        """
        try:
            message = await self._deliver(topic, key, value, timeout)
        except (KafkaException, BufferError) as exc:
            self._outage.failed(exc)
            raise
        self._outage.recovered()
        return message

    async def _deliver(
        self, topic: str, key: bytes | None, value: bytes, timeout: float
    ) -> Message:
        self.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Message] = loop.create_future()

        def report(error: KafkaError | None, message: Message) -> None:
            if error is None:
                self._outcomes.record_success()
            else:
                self._outcomes.record_failure(error.str())
            try:
                loop.call_soon_threadsafe(_settle, future, error, message)
            except RuntimeError:
                pass  # the loop is closed, so no request waits for this report

        try:
            self._producer.produce(topic, key=key, value=value, on_delivery=report)
        except BufferError:
            self._outcomes.record_failure("the producer's queue is full")
            raise
        except KafkaException as exc:
            self._outcomes.record_failure(kafka_reason(exc))
            raise
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            reason = f"not confirmed by the broker within {timeout:g} s"
            self._outcomes.record_failure(reason)
            # The request's own wait ran out, not librdkafka's message.timeout.ms,
            # so the error's text names that wait instead of "Local: Message timed out".
            raise KafkaException(
                KafkaError(KafkaError._MSG_TIMED_OUT, reason)
            ) from None

    def _poll(self) -> None:
        while not self._stopping.is_set():
            try:
                self._producer.poll(0.1)
            except Exception as exc:
                # confluent-kafka raises RuntimeError("... has been closed")
                # once the producer is closed, and no report is left to serve.
                if isinstance(exc, RuntimeError) and "closed" in str(exc):
                    return
                logger.exception("serving delivery reports failed")
                time.sleep(0.1)


def kafka_reason(exc: KafkaException) -> str:
    """Return the librdkafka error text of ``exc``, without its code."""
    error = exc.args[0] if exc.args else exc
    return error.str() if isinstance(error, KafkaError) else str(error)


def unconfirmed(
    what: str, exc: KafkaException | BufferError, timeout_seconds: float
) -> str:
    """Describe a message that the broker did not acknowledge, for a response.

    Only a full producer queue proves that the message was not sent. After a
    timeout or a delivery error it may have been stored all the same.
    """
    if isinstance(exc, BufferError):
        return f"the API's producer queue is full, so {what} was not sent"
    if _is_timeout(exc):
        reason = f"within {timeout_seconds:g} s"
    else:
        reason = f"({exc})"
    return f"the broker did not confirm {what} {reason}, so it may or may not be stored"


def delivery_state(exc: KafkaException | BufferError) -> str:
    """Return what became of a message the broker did not acknowledge, for a log.

    ``not sent`` after a full producer queue, else ``not confirmed, may or
    may not be stored``.
    """
    if isinstance(exc, BufferError):
        return "not sent"
    return "not confirmed, may or may not be stored"


def dead_letter_unconfirmed(
    exc: KafkaException | BufferError, timeout_seconds: float
) -> str:
    """Describe a dead letter that the broker did not acknowledge, for a response.

    After a timeout the producer keeps the dead letter queued and keeps trying
    to deliver it. librdkafka gives a message up only after
    ``message.timeout.ms`` (5 minutes by default, which the API keeps), far
    longer than the 60 s at most that a request waits, so a timeout that a
    request gets is its own.
    """
    detail = unconfirmed("the dead letter", exc, timeout_seconds)
    if isinstance(exc, KafkaException) and _is_timeout(exc):
        detail += "; the API's producer keeps it queued and keeps trying to send it"
    return detail


def _is_timeout(exc: KafkaException) -> bool:
    error = exc.args[0] if exc.args else None
    timeouts = (KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT)
    return isinstance(error, KafkaError) and error.code() in timeouts


def _settle(
    future: asyncio.Future[Message], error: KafkaError | None, message: Message
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(KafkaException(error))
    else:
        future.set_result(message)


def flush_on_stop(producer: Producer, stop: StopRequest) -> None:
    """Deliver the messages still queued in ``producer`` before the API exits.

    A dead letter whose delivery was not confirmed in time stays queued, and
    its 422 response states that the producer keeps sending it. The stop waits
    for such messages as the other services' stops do: until 10 s after the
    stop was requested (``stop`` counts from the signal, so the wait for open
    requests is part of it), and no longer once no broker accepts connections.
    """
    stop.set()
    try:
        remaining = flush_while_reachable(producer, _STOP_FLUSH_SECONDS, stop)
    except BrokerGoneError as exc:
        logger.warning("messages not confirmed on stop error=%s", exc)
        return
    if remaining:
        logger.warning(
            "messages not confirmed on stop remaining=%d seconds=%g",
            remaining,
            _STOP_FLUSH_SECONDS,
        )
