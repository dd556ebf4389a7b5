"""Read recommendation slates from one surface's topic, for site code.

Delivery: at-least-once. A slate's offset is stored only when the caller asks
for the next slate (or calls :meth:`SlateConsumer.mark_done`), so a slate
the site was still rendering when the process died is read again after a
restart. Stored offsets are committed every ``commit_every`` slates, on
:meth:`SlateConsumer.commit` and on :meth:`SlateConsumer.close`.

Ordering: slates are keyed by ``user_id``, so one user's slates arrive in the
order they were published. Duplicates from a replayed hot-path batch carry
the same ``recommendation_id``; the consumer drops the ones it has seen
recently.

Malformed input: a message that is not a valid slate is skipped with a
WARNING, never raised, and its offset is stored like any other.

Start: a group with no committed offsets starts at the oldest slate still
on the topic. Iteration waits for slates and does not raise while the
broker is unreachable: librdkafka keeps reconnecting and logs each failed
attempt on the ``librdkafka`` logger. Adding
:class:`services.common.logging.RepeatFilter` to that logger keeps one line
of each kind per 30 s.

Example::

    from schemas.recommendations import Surface
    from services.client import SlateConsumer
    from services.common.settings import KafkaSettings

    with SlateConsumer(KafkaSettings(), Surface.PRODUCTS, group_id="web") as slates:
        for slate in slates:
            render(slate.user_id, slate.items)
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator
from types import TracebackType

from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from pydantic import ValidationError

from schemas.recommendations import Slate, Surface
from services.common.kafka import consumer_config
from services.common.settings import KafkaSettings, TopicSettings

__all__ = ["SlateConsumer"]

logger = logging.getLogger(__name__)


class SlateConsumer:
    """Iterate the slates of one surface as a member of a consumer group.

    Args:
        kafka: how to reach the brokers.
        surface: which surface's topic to read, as a :class:`Surface` or its
            value, such as ``"products"``.
        group_id: the consumer group; instances with the same group share
            the topic's partitions.
        topics: topic names (defaults to ``CARTWHEEL_TOPIC_*``).
        commit_every: stored offsets are committed after this many slates.
        dedupe_size: how many recent ``recommendation_id`` values are
            remembered to drop duplicates; 0 turns deduplication off.
        poll_timeout_seconds: how long one :meth:`poll` waits for a slate.
        fetch_wait_ms: the broker's fetch wait, which bounds the latency.

    Raises:
        ValueError: ``surface`` names no surface, or ``commit_every`` is
            below 1.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        surface: Surface | str,
        group_id: str,
        *,
        topics: TopicSettings | None = None,
        commit_every: int = 100,
        dedupe_size: int = 10_000,
        poll_timeout_seconds: float = 1.0,
        fetch_wait_ms: int = 10,
    ) -> None:
        surface = _surface(surface)
        if commit_every < 1:
            raise ValueError(f"commit_every={commit_every}; expected at least 1")
        self.topic = (topics or TopicSettings()).recommendations(surface.value)
        self._consumer = Consumer(
            consumer_config(kafka, group_id, fetch_wait_ms=fetch_wait_ms)
        )
        self._consumer.subscribe([self.topic])
        self._commit_every = commit_every
        self._dedupe_size = dedupe_size
        self._poll_timeout = poll_timeout_seconds
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._pending: Message | None = None
        self._uncommitted = 0
        self._is_closed = False

    def __enter__(self) -> SlateConsumer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[Slate]:
        """Yield slates until the consumer is closed; waits while none arrive."""
        while not self._is_closed:
            slate = self.poll()
            if slate is not None:
                yield slate

    def poll(self, timeout_seconds: float | None = None) -> Slate | None:
        """Return the next new slate, or None when none arrived in time.

        Calling it marks the previously returned slate as done.
        """
        self.mark_done()
        timeout = self._poll_timeout if timeout_seconds is None else timeout_seconds
        message = self._consumer.poll(timeout)
        if message is None:
            return None
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                logger.warning(
                    "slate fetch failed topic=%s error=%s", self.topic, error
                )
            return None
        self._pending = message
        slate = self._decode(message)
        if slate is None or self._is_duplicate(slate.recommendation_id):
            return None
        return slate

    def mark_done(self) -> None:
        """Store the offset of the last returned slate; it will not be read again."""
        message, self._pending = self._pending, None
        if message is None:
            return
        self._consumer.store_offsets(message=message)
        self._uncommitted += 1
        if self._uncommitted >= self._commit_every:
            self.commit()

    def commit(self) -> None:
        """Commit the stored offsets synchronously."""
        if self._uncommitted == 0:
            return
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException:
            logger.exception("slate offset commit failed topic=%s", self.topic)
            raise
        self._uncommitted = 0

    def close(self) -> None:
        """Commit what is done and leave the group."""
        if self._is_closed:
            return
        self._is_closed = True
        try:
            self.commit()
        finally:
            self._consumer.close()

    def _decode(self, message: Message) -> Slate | None:
        try:
            return Slate.model_validate_json(message.value() or b"")
        except ValidationError as exc:
            logger.warning(
                "invalid slate skipped topic=%s partition=%s offset=%s errors=%d",
                message.topic(),
                message.partition(),
                message.offset(),
                exc.error_count(),
            )
            return None

    def _is_duplicate(self, recommendation_id: str) -> bool:
        if self._dedupe_size == 0:
            return False
        if recommendation_id in self._seen:
            return True
        self._seen[recommendation_id] = None
        if len(self._seen) > self._dedupe_size:
            self._seen.popitem(last=False)
        return False


def _surface(value: Surface | str) -> Surface:
    """Return the surface that ``value`` names, so site code may pass a plain string.

    Raises:
        ValueError: ``value`` is not a surface's value.
    """
    try:
        return Surface(value)
    except ValueError:
        names = ", ".join(repr(surface.value) for surface in Surface)
        raise ValueError(
            f"unknown surface {value!r}; expected one of {names}, "
            "or a schemas.Surface member"
        ) from None
