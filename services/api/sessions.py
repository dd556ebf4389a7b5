"""The API's own session-kNN index, fed from the events topic.

On-demand slates propose session-kNN candidates as the hot path's slates do,
from an index that lives in the API process. :class:`SessionFollower` fills
it at start and then follows new events in a thread of its own.

Delivery: none to keep. The follower assigns itself every partition of the
events topic, joins no consumer group and commits no offsets, so the hot
path's group and offsets stay untouched. Adding an event to the index twice
changes nothing, so events read again are harmless.

Start: each partition is read from ``warmup_events`` before the end offset
that the broker reports at start (0 reads only later events), then followed.
A broker that reports an end offset below the last stored record makes the
follower read a few more events than that, never fewer. Partitions added to
the topic after the start are not read until the API restarts. An API that
starts before the topic exists retries in the follower's thread, waiting at
most 30 s between tries, and reads the topic this way once it is created.

Ordering: each partition's events are added in partition order. Events of
one user share a partition, so the newest session read for a user is the
session of their newest event.

Malformed input: a message that is not a valid event is skipped and counted
in ``cartwheel_api_session_events_total{outcome="skipped"}``. The hot path
dead-letters it, so the API does not.

Concurrency: request threads read the index while the follower adds to it,
so :class:`SharedSessionIndex` takes one lock in every method.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from schemas.events import Event
from schemas.validation import Rejection, parse_event
from services.api.metrics import (
    SESSION_EVENTS,
    SESSION_FOLLOWER_RUNNING,
    SESSION_INDEX_SESSIONS,
)
from services.common.errors import TopicMissingError
from services.common.kafka import (
    consumer_config,
    require_listener,
    unresponsive_broker_error,
)
from services.common.settings import KafkaSettings
from services.common.topic_wait import retry_until_open
from services.scorer.session_knn import SessionIndex, session_key

__all__ = ["SessionFollower", "SharedSessionIndex"]

logger = logging.getLogger(__name__)

_METADATA_TIMEOUT_SECONDS = 10.0
_BATCH = 500


class SharedSessionIndex(SessionIndex):
    """A session index that request threads read while one thread adds to it.

    It takes the sizes of :class:`SessionIndex`. It also remembers the
    session of each user's newest event, for as many users as the index keeps
    sessions, so that an on-demand slate scores the session the user is in.
    """

    def __init__(
        self,
        max_sessions: int,
        max_items: int,
        samples_per_item: int,
        *,
        max_total_items: int | None = None,
    ) -> None:
        super().__init__(
            max_sessions, max_items, samples_per_item, max_total_items=max_total_items
        )
        self._lock = threading.Lock()
        self._user_sessions: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return super().__len__()

    def session_items(self, session_key: str) -> list[str]:
        """Return the items of a session, oldest first."""
        with self._lock:
            return super().session_items(session_key)

    def add(self, session_key: str, item_id: str, event_time: float) -> None:
        """Record that ``item_id`` was seen in a session at ``event_time`` (Unix s)."""
        with self._lock:
            super().add(session_key, item_id, event_time)

    def add_events(self, events: Sequence[Event]) -> None:
        """Add events in order and note each user's newest session, in one lock."""
        with self._lock:
            for event in events:
                key = session_key(event.user_id, event.session_id)
                super().add(key, event.item_id, event.event_timestamp)
                self._user_sessions[event.user_id] = key
                self._user_sessions.move_to_end(event.user_id)
            while len(self._user_sessions) > self._max_sessions:
                self._user_sessions.popitem(last=False)

    def recommend(
        self,
        session_key: str,
        now: float,
        neighbours: int,
        half_life_seconds: float,
        *,
        position_decay: float = 2.0,
        neighbour_position_decay: float = 3.0,
        limit: int | None = None,
    ) -> list[tuple[str, float]]:
        """Score items of similar sessions, as :meth:`SessionIndex.recommend` does."""
        with self._lock:
            return super().recommend(
                session_key,
                now,
                neighbours,
                half_life_seconds,
                position_decay=position_decay,
                neighbour_position_decay=neighbour_position_decay,
                limit=limit,
            )

    def session_key_of(self, user_id: str) -> str:
        """Return the session of the user's newest event read, else their history."""
        with self._lock:
            return self._user_sessions.get(user_id) or session_key(user_id, None)


class SessionFollower:
    """Fill a session index from the events topic, then follow the topic.

    Args:
        index: the index to fill.
        kafka: connection settings.
        topic: the events topic.
        warmup_events: events read at start per partition, from before the
            end offset the broker reports.
        poll_timeout_seconds: maximum wait of one Kafka poll, which bounds
            how long :meth:`stop` waits for the thread.
    """

    def __init__(
        self,
        index: SharedSessionIndex,
        kafka: KafkaSettings,
        topic: str,
        *,
        warmup_events: int,
        poll_timeout_seconds: float = 0.5,
    ) -> None:
        if warmup_events < 0:
            raise ValueError(f"warmup_events must be 0 or more, got {warmup_events}")
        self.topic = topic
        self._index = index
        self._kafka = kafka
        self._warmup_events = warmup_events
        self._poll_timeout = poll_timeout_seconds
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread: threading.Thread | None = None
        # The last read error logged, written by the follower's thread only.
        self._last_error: str | None = None

    @property
    def index(self) -> SharedSessionIndex:
        """The index this follower fills."""
        return self._index

    def start(self, *, wait_for_topic: bool = False) -> None:
        """Assign every partition of the topic and follow it in a daemon thread.

        Args:
            wait_for_topic: when the events topic is missing, return at once
                and retry in the thread until it exists (see
                :func:`~services.common.topic_wait.retry_until_open`), then read
                it as at any start. ``cartwheel_api_session_follower_running``
                is 0 while the thread waits.

        Raises:
            BrokerUnreachableError: no broker listens at the bootstrap address
                or none returned the topic's metadata in time.
            TopicMissingError: the events topic does not exist, and
                ``wait_for_topic`` is False.
        """
        if self._thread is not None and self._thread.is_alive():
            return
        for outcome in ("indexed", "skipped"):
            SESSION_EVENTS.labels(outcome=outcome)
        SESSION_INDEX_SESSIONS.set_function(lambda: len(self._index))
        self._stop.clear()
        try:
            consumer, partitions = self._open()
        except TopicMissingError as exc:
            if not wait_for_topic:
                raise
            SESSION_FOLLOWER_RUNNING.labels(self.topic).set(0)
            logger.warning(
                "session follower waits for the events topic, on-demand slates "
                "have no session-kNN candidates until it exists: %s",
                exc,
            )
            self._start_thread(self._wait_then_follow, exc)
            return
        # Set before the thread starts, so a thread that fails at once leaves 0.
        SESSION_FOLLOWER_RUNNING.labels(self.topic).set(1)
        self._start_thread(self._follow, consumer, partitions)
        self._log_started(partitions)

    def stop(self, timeout_seconds: float = 10.0) -> None:
        """Stop following and close the consumer; the index stays readable."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_seconds)

    def wait_until_caught_up(self, timeout_seconds: float) -> bool:
        """Wait until every partition was read to its end; False on timeout."""
        return self._caught_up.wait(timeout_seconds)

    def _start_thread(self, target: Callable[..., None], *args: object) -> None:
        self._thread = threading.Thread(
            target=target, args=args, name="session-follower", daemon=True
        )
        self._thread.start()

    def _log_started(self, partitions: set[int]) -> None:
        logger.info(
            "session follower started topic=%s partitions=%d warmup_events=%d",
            self.topic,
            len(partitions),
            self._warmup_events,
        )

    def _open(self) -> tuple[Consumer, set[int]]:
        """Return a consumer assigned to every partition and those partitions."""
        require_listener(self._kafka)
        # librdkafka needs a group id even for assigned partitions. This one is
        # unique and never joined: assign() takes no part in group membership,
        # and consumer_config turns automatic commits off.
        config = consumer_config(self._kafka, f"cartwheel-api-sessions-{uuid.uuid4()}")
        # End-of-partition notices tell when the start-up read is done.
        config["enable.partition.eof"] = True
        consumer = Consumer(config)
        try:
            starts = self._start_offsets(consumer)
        except BaseException:
            consumer.close()
            raise
        consumer.assign(
            [TopicPartition(self.topic, p, offset) for p, offset in starts.items()]
        )
        return consumer, set(starts)

    def _wait_then_follow(self, first_error: TopicMissingError) -> None:
        try:
            opened = retry_until_open(
                self._open,
                self._stop,
                reader="session follower",
                topic=self.topic,
                first_error=first_error,
            )
        except Exception:
            logger.exception(
                "session follower stopped while waiting for its topic, on-demand "
                "session-kNN candidates get no events until a restart topic=%s",
                self.topic,
            )
            return
        if opened is None:
            return
        consumer, partitions = opened
        SESSION_FOLLOWER_RUNNING.labels(self.topic).set(1)
        self._log_started(partitions)
        self._follow(consumer, partitions)

    def _start_offsets(self, consumer: Consumer) -> dict[int, int]:
        try:
            metadata = consumer.list_topics(
                self.topic, timeout=_METADATA_TIMEOUT_SECONDS
            )
            found = metadata.topics.get(self.topic)
            if found is None or found.error is not None or not found.partitions:
                raise TopicMissingError(
                    f"topic {self.topic!r} is missing; run 'cartwheel topics create'"
                )
            starts = {}
            for partition in sorted(found.partitions):
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition),
                    timeout=_METADATA_TIMEOUT_SECONDS,
                )
                # LIMITATION(L-50): sessions older than the last warmup_events
                # events of a partition are missing until their users return.
                starts[partition] = max(low, high - self._warmup_events)
        except KafkaException as exc:
            raise unresponsive_broker_error(
                self._kafka, _METADATA_TIMEOUT_SECONDS, exc
            ) from exc
        return starts

    def _follow(self, consumer: Consumer, reading: set[int]) -> None:
        started = time.monotonic()
        try:
            while not self._stop.is_set():
                events, skipped = self._read(consumer, reading)
                self._index.add_events(events)
                SESSION_EVENTS.labels(outcome="indexed").inc(len(events))
                SESSION_EVENTS.labels(outcome="skipped").inc(skipped)
                if not reading and not self._caught_up.is_set():
                    self._caught_up.set()
                    logger.info(
                        "session index caught up topic=%s sessions=%d seconds=%.1f",
                        self.topic,
                        len(self._index),
                        time.monotonic() - started,
                    )
        except Exception:
            logger.exception(
                "session follower stopped, on-demand session-kNN candidates get "
                "no newer events until a restart topic=%s",
                self.topic,
            )
        finally:
            SESSION_FOLLOWER_RUNNING.labels(self.topic).set(0)
            consumer.close()

    def _read(self, consumer: Consumer, reading: set[int]) -> tuple[list[Event], int]:
        """Return the valid events of one poll and the count of invalid ones.

        A partition's end-of-partition notice removes it from ``reading``.
        """
        events = []
        skipped = 0
        for message in consumer.consume(_BATCH, timeout=self._poll_timeout):
            error = message.error()
            if error is None:
                self._last_error = None
                event = parse_event(message.value())
                if isinstance(event, Rejection):
                    skipped += 1
                else:
                    events.append(event)
            elif error.code() == KafkaError._PARTITION_EOF:
                reading.discard(message.partition() or 0)
            elif str(error) != self._last_error:
                # The same partition error can come back on later polls while
                # its cause lasts, so it is logged once until a message arrives.
                self._last_error = str(error)
                logger.warning(
                    "events read failed topic=%s error=%s", self.topic, error
                )
        return events, skipped
