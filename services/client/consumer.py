"""Read recommendation slates from one surface's topic, for site code.

Delivery: at-least-once. A slate's offset is stored only when the caller asks
for the next slate (or calls :meth:`SlateConsumer.mark_done`), so a slate
the site was still rendering when the process died is read again after a
restart. Stored offsets are committed every ``commit_every`` slates without
waiting for the broker, so a broker that is down or frozen never holds up
the iteration. A failed commit is logged, and its offsets go with the next
one. :meth:`SlateConsumer.commit` commits and waits, and raises on failure.
:meth:`SlateConsumer.close` commits too, waiting at most 10 s.

Ordering: slates are keyed by ``user_id``, so one user's slates arrive in the
order they were published. Duplicates from a replayed hot-path batch carry
the same ``recommendation_id``; the consumer drops the ones it has seen
recently.

Malformed input: a message that is not a valid slate, or a slate of another
surface than the topic's, is skipped with a WARNING instead of raised, and
its offset is stored like any other. Slates are read in pydantic's strict JSON
mode, as events are, so a slate that ``schemas/json/slate.schema.json``
rejects is skipped too: no numbers as strings and no Unix seconds as
``generated_at``.

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
import time
from collections import OrderedDict
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from pydantic import TypeAdapter, ValidationError

from schemas.recommendations import Slate, Surface
from services.client.arguments import require_int, require_timeout
from services.common.kafka import consumer_config
from services.common.settings import ConsumerGroupId, KafkaSettings, TopicSettings

__all__ = ["SlateConsumer"]

logger = logging.getLogger(__name__)

# How long close() waits for the broker to confirm the last commit.
_CLOSE_WAIT_SECONDS = 10.0

# The range of fetch.wait.max.ms that librdkafka accepts.
_MAX_FETCH_WAIT_MS = 300_000

_GROUP_ID = TypeAdapter(ConsumerGroupId)


class SlateConsumer:
    """Iterate the slates of one surface as a member of a consumer group.

    Args:
        kafka: how to reach the brokers.
        surface: which surface's topic to read, as a :class:`Surface` or its
            value, such as ``"products"``.
        group_id: the consumer group; instances with the same group share
            the topic's partitions.
        topics: topic names (defaults to ``CARTWHEEL_TOPIC_*``).
        commit_every: stored offsets are committed after this many slates,
            an int of at least 1.
        dedupe_size: how many recent ``recommendation_id`` values are
            remembered to drop duplicates, an int; 0 turns deduplication off.
        poll_timeout_seconds: how long one :meth:`poll` waits for a slate,
            from 0 to 2147483 (librdkafka's limit, about 24 days).
        fetch_wait_ms: the broker's fetch wait, which bounds the latency,
            an int from 0 to 300,000.

    Raises:
        ValueError: ``surface`` names no surface, ``group_id`` is blank, or
            a number is not of the type or in the range given above.
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
        _require_group_id(group_id)
        _require_sizes(commit_every, dedupe_size, fetch_wait_ms)
        require_timeout("poll_timeout_seconds", poll_timeout_seconds)
        self.topic = (topics or TopicSettings()).recommendations(surface.value)
        self._surface = surface
        config = consumer_config(kafka, group_id, fetch_wait_ms=fetch_wait_ms)
        self._consumer = Consumer({**config, "on_commit": self._on_commit})
        self._consumer.subscribe([self.topic])
        self._commit_every = commit_every
        self._dedupe_size = dedupe_size
        self._poll_timeout = poll_timeout_seconds
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._pending: Message | None = None
        self._uncommitted = 0
        self._is_closed = False
        self._commits_in_flight = 0

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

        Args:
            timeout_seconds: how long to wait for a slate, from 0 to 2147483;
                ``poll_timeout_seconds`` when None.

        Raises:
            ValueError: ``timeout_seconds`` is negative, not finite or over
                2147483.
            RuntimeError: the consumer is closed; build a new one to read
                on, and it resumes after the last slate marked done.
        """
        if self._is_closed:
            raise RuntimeError(
                f"the slate consumer of topic {self.topic!r} is closed; build a "
                "new SlateConsumer to read more slates"
            )
        if timeout_seconds is None:
            timeout = self._poll_timeout
        else:
            timeout = require_timeout("timeout_seconds", timeout_seconds)
        self.mark_done()
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
        """Store the offset of the last returned slate; it will not be read again.

        Raises:
            RuntimeError: the consumer is closed; :meth:`close` already stored
                and committed what was done.
        """
        if self._is_closed:
            raise RuntimeError(
                f"the slate consumer of topic {self.topic!r} is closed; mark "
                "slates done before closing it"
            )
        message, self._pending = self._pending, None
        if message is None:
            return
        self._consumer.store_offsets(message=message)
        self._uncommitted += 1
        if self._uncommitted >= self._commit_every:
            self._commit_in_background()

    def commit(self) -> None:
        """Commit the stored offsets and wait for the broker to confirm them.

        Raises:
            confluent_kafka.KafkaException: the broker did not take the commit,
                for example because the group moved the partitions to another
                member.
        """
        if self._uncommitted == 0:
            return
        self._uncommitted = 0
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if not _is_nothing_stored(exc.args[0]):
                self._uncommitted = 1
                raise

    def close(self) -> None:
        """Commit what is done, waiting at most 10 s, and leave the group.

        A failed commit is logged, not raised. When the broker does not
        confirm the commit in time, the consumer is left open, because
        librdkafka's close would wait for it too. The group then drops the
        member after its session timeout, and the slates since the last commit
        are read again.
        """
        if self._is_closed:
            return
        self._is_closed = True
        if self._uncommitted:
            self._commit_in_background()
        deadline = time.monotonic() + _CLOSE_WAIT_SECONDS
        while self._commits_in_flight and time.monotonic() < deadline:
            # Polling serves the commit reports. A slate it returns has no
            # stored offset, so it is read again later.
            self._consumer.poll(0.1)
        if self._commits_in_flight:
            logger.warning(
                "slate offsets not committed on close: the broker did not respond "
                "within %g s, so the consumer is left open and the slates since "
                "the last commit will be read again topic=%s",
                _CLOSE_WAIT_SECONDS,
                self.topic,
            )
            return
        self._consumer.close()

    def _commit_in_background(self) -> None:
        """Commit the stored offsets without waiting for the broker to confirm."""
        try:
            self._consumer.commit(asynchronous=True)
        except KafkaException as exc:
            if not _is_nothing_stored(exc.args[0]):
                self._log_commit_failure(exc.args[0])
            return
        self._commits_in_flight += 1
        self._uncommitted = 0

    def _on_commit(self, error: KafkaError | None, partitions: list[Any]) -> None:
        self._commits_in_flight = max(0, self._commits_in_flight - 1)
        if error is not None and not _is_nothing_stored(error):
            self._log_commit_failure(error)

    def _log_commit_failure(self, error: KafkaError) -> None:
        # The offsets stay stored, so the next commit carries them, the one on
        # close included.
        self._uncommitted = max(self._uncommitted, 1)
        logger.warning(
            "slate offset commit failed, retried with the next one topic=%s error=%s",
            self.topic,
            error,
        )

    def _decode(self, message: Message) -> Slate | None:
        try:
            slate = Slate.model_validate_json(message.value() or b"", strict=True)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "message"
            _log_skipped(
                message,
                "errors=%d first=%s: %s",
                exc.error_count(),
                where,
                first["msg"],
            )
            return None
        # A slate of another surface would reach the site's code for this one.
        if slate.surface is not self._surface:
            _log_skipped(
                message, "surface=%s expected=%s", slate.surface, self._surface
            )
            return None
        return slate

    def _is_duplicate(self, recommendation_id: str) -> bool:
        if self._dedupe_size == 0:
            return False
        if recommendation_id in self._seen:
            return True
        self._seen[recommendation_id] = None
        if len(self._seen) > self._dedupe_size:
            self._seen.popitem(last=False)
        return False


def _log_skipped(message: Message, details: str, *values: object) -> None:
    logger.warning(
        "invalid slate skipped topic=%s partition=%s offset=%s " + details,
        message.topic(),
        message.partition(),
        message.offset(),
        *values,
    )


def _is_nothing_stored(error: KafkaError) -> bool:
    """Return whether a commit failed only because no offset was stored."""
    return error.code() == KafkaError._NO_OFFSET


def _require_group_id(group_id: str) -> None:
    """Raise ValueError for a group id that confluent-kafka would crash on."""
    try:
        _GROUP_ID.validate_python(group_id)
    except ValidationError:
        raise ValueError(
            f"group_id={group_id!r}; expected the non-blank name of the site's "
            "consumer group, such as 'web'"
        ) from None


def _require_sizes(commit_every: int, dedupe_size: int, fetch_wait_ms: int) -> None:
    require_int("commit_every", commit_every, 1, None, "an integer of 1 or more")
    require_int(
        "dedupe_size",
        dedupe_size,
        0,
        None,
        "an integer of 0 or more, where 0 turns deduplication off",
    )
    require_int(
        "fetch_wait_ms",
        fetch_wait_ms,
        0,
        _MAX_FETCH_WAIT_MS,
        f"an integer from 0 to {_MAX_FETCH_WAIT_MS}, the range that librdkafka accepts",
    )


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
