"""Publish slates on ``recommendations.<surface>`` and keep each user's latest in Redis.

Slates are keyed by ``user_id`` so one user's slates stay in order within a
partition. The latest slate per user and surface is also written to Redis
with a TTL, for the HTTP API. Delivery is at-least-once: :meth:`flush` raises
when a slate was not acknowledged, so the hot path does not commit past it,
and a replayed event yields a slate with the same ``recommendation_id``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis
from confluent_kafka import KafkaError, Message, Producer

from schemas.recommendations import Slate, Surface
from services.common.errors import MessageDeliveryError
from services.common.kafka import raise_if_fatal
from services.common.redis_pipeline import Command, run_pipelined
from services.common.settings import TopicSettings
from services.common.stop_request import StopRequest, flush_while_reachable
from services.scorer.metrics import SLATE_ITEMS, SLATE_LATENCY, SLATES

__all__ = ["SlateDeliveryError", "SlatePublisher", "latest_slate_key"]

logger = logging.getLogger(__name__)


class SlateDeliveryError(MessageDeliveryError):
    """Raised when the broker did not acknowledge a slate."""


def latest_slate_key(prefix: str, user_id: str, surface: Surface | str) -> str:
    """Return the Redis key of a user's latest slate on one surface.

    The key shares the user's hash tag, so it lives in the user's cluster slot.
    """
    return f"{prefix}:{{u:{user_id}}}:slate:{Surface(surface).value}"


class SlatePublisher:
    """Send slates to Kafka and store the latest per user and surface in Redis.

    Args:
        producer: a confluent-kafka producer owned by the caller.
        topics: topic names; ``topics.recommendations(surface)`` per slate.
        redis_client: where the latest slates go; None disables that copy.
        key_prefix: the Redis key prefix.
        latest_ttl_seconds: how long a latest slate stays readable.
        stop: the request that :meth:`stop` sets. Flushes then give up once
            no broker accepts connections. None makes every flush wait its
            timeout.
    """

    def __init__(
        self,
        producer: Producer,
        topics: TopicSettings,
        redis_client: redis.Redis | None,
        key_prefix: str,
        latest_ttl_seconds: int,
        *,
        stop: StopRequest | None = None,
    ) -> None:
        self._producer = producer
        self._topics = {
            surface: topics.recommendations(surface.value) for surface in Surface
        }
        self._redis = redis_client
        self._prefix = key_prefix
        self._ttl = latest_ttl_seconds
        self._failures: list[str] = []
        self._stop = stop

    def publish(self, slates: Sequence[Slate]) -> None:
        """Enqueue slates for Kafka and write the latest ones to Redis."""
        latest: list[Command] = []
        for slate in slates:
            payload = slate.model_dump_json().encode()
            self._produce(self._topics[slate.surface], slate.user_id.encode(), payload)
            SLATE_LATENCY.labels(slate.surface.value).observe(slate.latency_ms / 1000.0)
            SLATES.labels(slate.surface.value, slate.model_version).inc()
            SLATE_ITEMS.labels(slate.surface.value).observe(len(slate.items))
            if self._redis is not None:
                # LIMITATION(L-56): the last write wins, so a batch replayed after
                # a crash can put an older slate back as the latest one.
                key = latest_slate_key(self._prefix, slate.user_id, slate.surface)
                latest.append(("SET", key, payload, "EX", self._ttl))
        if self._redis is not None:
            run_pipelined(self._redis, latest)
        self._producer.poll(0)

    def poll(self) -> None:
        """Serve delivery reports and librdkafka's log lines without blocking."""
        self._producer.poll(0)

    def stop(self) -> None:
        """Let flushes give up once no broker accepts connections (thread-safe).

        A publisher built without a stop request keeps waiting.
        """
        if self._stop is not None:
            self._stop.set()

    def flush(self, timeout_seconds: float = 30.0) -> None:
        """Wait until every slate sent so far is acknowledged.

        Raises:
            SlateDeliveryError: when a slate failed or is still queued.
            BrokerGoneError: after :meth:`stop`, when slates were still queued
                and no broker accepted connections.
        """
        remaining = flush_while_reachable(self._producer, timeout_seconds, self._stop)
        failures, self._failures = self._failures, []
        if failures:
            raise SlateDeliveryError(
                f"{len(failures)} slate(s) were not delivered: {failures[0]}; "
                "check that the recommendation topics exist and the broker is up"
            )
        if remaining:
            raise SlateDeliveryError(
                f"{remaining} slate(s) still queued after {timeout_seconds:.0f} s; "
                "check that the broker is reachable"
            )

    def _produce(self, topic: str, key: bytes, value: bytes) -> None:
        try:
            self._producer.produce(
                topic, key=key, value=value, on_delivery=self._on_delivery
            )
        except BufferError:
            # The local queue is full: wait for deliveries to free room, once.
            self._producer.flush(5.0)
            self._producer.produce(
                topic, key=key, value=value, on_delivery=self._on_delivery
            )

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            return
        logger.error("slate delivery failed topic=%s error=%s", message.topic(), error)
        self._failures.append(str(error))
        raise_if_fatal(error)
