"""Readiness of the API: its dependencies respond and its deliveries succeed.

``/readyz`` returns 503 while any of these is true:

- Redis does not respond to a PING within ``readiness_timeout_seconds``;
- the broker does not list its topics within that time, or the list lacks
  the events topic;
- the latest delivery of an event or a dead letter failed, or went
  unconfirmed for ``ingest_timeout_seconds``, less than
  ``readiness_failure_seconds`` ago.

The last rule exists because a broker can answer metadata requests while it
confirms no write, as the local Tansu broker does after a restart (L-77).
The topic list then looks fine, yet every event post is a 503.

A failure stops counting as soon as a later delivery succeeds. That includes
the late report of a message whose request stopped waiting, because
librdkafka keeps retrying it for ``message.timeout.ms`` (5 minutes by
default, which the API keeps). A failure also stops counting once it is
older than the window, and the first two rules then decide alone. So an
instance that lost its traffic comes back into rotation after the window,
and it leaves again at the next failed post if the broker still confirms
nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

import redis
from confluent_kafka import KafkaException, Producer
from pydantic import BaseModel

from services.api.settings import ApiSettings

__all__ = ["DeliveryOutcomes", "Readiness", "check_readiness"]

logger = logging.getLogger(__name__)


class Readiness(BaseModel):
    """The state of each dependency: ``ok`` or why it failed."""

    status: Literal["ready", "not_ready"]
    kafka: str
    redis: str


class DeliveryOutcomes:
    """The outcome of the latest delivery, as readiness reads it.

    The delivery-report thread and the event loop both record outcomes, so
    every method is thread-safe.

    Args:
        failure_seconds: how long a failure keeps the API unready when no
            later delivery succeeds.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        failure_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = failure_seconds
        self._clock = clock
        self._lock = threading.Lock()
        # When the current run of failures began, when its latest failure
        # was recorded and why; None after a success.
        self._failing_since: float | None = None
        self._failed_at = 0.0
        self._reason = ""

    def record_success(self) -> None:
        """Record a delivery that the broker confirmed."""
        with self._lock:
            since = self._failing_since
            self._failing_since = None
        # The API's kafka outage log reports the recovery at INFO.
        if since is not None:
            logger.debug(
                "event deliveries recovered failing_seconds=%.1f",
                self._clock() - since,
            )

    def record_failure(self, reason: str) -> None:
        """Record a delivery that failed or was not confirmed in time.

        Args:
            reason: why, such as the broker's error; shown by ``/readyz``.
        """
        now = self._clock()
        with self._lock:
            is_first = self._failing_since is None or self._is_aged(now)
            if is_first:
                self._failing_since = now
            self._failed_at = now
            self._reason = reason
        # The API's kafka outage log reports the failure and this window.
        if is_first:
            logger.debug(
                "event delivery failed, /readyz returns 503 until a delivery "
                "succeeds or %g s pass without another failure reason=%s",
                self._window,
                reason,
            )

    def problem(self) -> str | None:
        """Return why readiness fails for deliveries, or None when it does not."""
        now = self._clock()
        with self._lock:
            if self._failing_since is None or self._is_aged(now):
                return None
            age = now - self._failed_at
            reason = self._reason
        return (
            f"the latest delivery to Kafka failed {age:.0f} s ago ({reason}); "
            "this check passes once a delivery succeeds, or after "
            f"{self._window - age:.0f} s without another failure"
        )

    def _is_aged(self, now: float) -> bool:
        return now - self._failed_at >= self._window


def check_readiness(
    settings: ApiSettings,
    client: redis.Redis,
    producer: Producer,
    outcomes: DeliveryOutcomes,
) -> Readiness:
    """Check Redis, then the deliveries or, without a recent failure, the broker.

    Args:
        settings: the API settings (topics and timeouts).
        client: the Redis client to PING.
        producer: the producer whose topic list is read.
        outcomes: the outcomes of the API's deliveries.
    """
    try:
        client.ping()
        redis_state = "ok"
    except redis.RedisError as exc:
        redis_state = f"unreachable: {exc}"
    kafka_state = outcomes.problem() or _topic_state(settings, producer)
    is_ready = redis_state == "ok" and kafka_state == "ok"
    return Readiness(
        status="ready" if is_ready else "not_ready",
        kafka=kafka_state,
        redis=redis_state,
    )


def _topic_state(settings: ApiSettings, producer: Producer) -> str:
    """Return ``ok`` when the broker lists the events topic, else what failed."""
    try:
        # Listing all topics never makes the broker create the events topic.
        metadata = producer.list_topics(timeout=settings.readiness_timeout_seconds)
    except KafkaException as exc:
        return f"unreachable: {exc}"
    topic = metadata.topics.get(settings.topics.events)
    if topic is None or topic.error is not None:
        return f"topic {settings.topics.events!r} is missing"
    return "ok"
