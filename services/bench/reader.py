"""Reads the products slates of a bench run and matches them to sent events.

Delivery: the reader consumes ``recommendations.products`` from the start with
a consumer group of its own and commits nothing, so it reads every slate
the hot path published, duplicates included. A message that is not a valid slate
is counted and skipped, and the report gives the count. Slates are read in
strict JSON mode, as sites read them, so a slate with a number sent as text
is not valid. Memory stays small: an event's send time is kept
only until its slate arrives, latencies go into log-spaced buckets, and the
users with a slate and the events with a slate take one bit each.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping

from confluent_kafka import Consumer
from pydantic import ValidationError

from schemas.recommendations import Slate
from services.bench.generator import event_index
from services.common.kafka import consume_available, consumer_config
from services.common.settings import KafkaSettings

__all__ = ["LatencyHistogram", "MessageThread", "SlateReader", "user_bitmap"]

# Bucket edges grow by 1 % so a percentile is off by at most 1 %.
_BUCKET_GROWTH = 1.01


class LatencyHistogram:
    """Millisecond latencies in log-spaced buckets: percentiles in bounded memory."""

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.count = 0

    def add(self, milliseconds: float) -> None:
        """Count one latency."""
        bucket = math.floor(math.log(max(milliseconds, 0.01), _BUCKET_GROWTH))
        self.buckets[bucket] += 1
        self.count += 1

    def percentile(self, share: float) -> float:
        """Return the upper edge of the bucket holding the ``share`` quantile."""
        if not self.count:
            return math.nan
        target = share * self.count
        seen = 0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen >= target:
                return float(_BUCKET_GROWTH ** (bucket + 1))
        return math.nan

    def percentiles(self) -> dict[str, float]:
        """Return p50, p95 and p99 in milliseconds."""
        return {
            "p50": self.percentile(0.50),
            "p95": self.percentile(0.95),
            "p99": self.percentile(0.99),
        }


class MessageThread:
    """A consumer with a group of its own that reads a topic on a thread.

    Each message's value goes to ``handle`` with its arrival time (monotonic
    seconds), taken as soon as the message is read.

    Args:
        kafka: the broker to read from.
        topic: the topic, read from its start.
        handle: called on the thread with each message's value and arrival time.
    """

    def __init__(
        self, kafka: KafkaSettings, topic: str, handle: Callable[[bytes, float], None]
    ) -> None:
        self._handle = handle
        group = f"bench-reader-{uuid.uuid4().hex[:8]}"
        self._consumer = Consumer(consumer_config(kafka, group, fetch_wait_ms=10))
        self._consumer.subscribe([topic])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread and close the consumer."""
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()

    def _read(self) -> None:
        while not self._stop.is_set():
            for message in consume_available(self._consumer, 1000, 0.05):
                if message.error() is None:
                    self._handle(message.value() or b"", time.monotonic())


class SlateReader:
    """Consumes products slates on a thread and matches them to sent events.

    Args:
        kafka: the broker to read from.
        topic: the products recommendations topic.
        users: one bit per user of the synthetic shop (``su<n>`` ids). The
            reader sets the bit of every user that gets a slate, so readers
            of several phases can share the bitmap.
        events: one more than the highest event index that can be sent, for
            the bitmap of events that got a slate.
    """

    def __init__(
        self, kafka: KafkaSettings, topic: str, users: bytearray, events: int
    ) -> None:
        self.sent: dict[int, float] = {}
        self.slates = 0
        self.duplicates = 0
        self.unknown = 0
        self.invalid = 0
        self.slate_bytes = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self._slates_before_rate = 0
        self.end_to_end = LatencyHistogram()
        self.in_process = LatencyHistogram()
        self.model_versions: set[str] = set()
        self._users = users
        self._answered = bytearray((events + 7) // 8)
        self._messages = MessageThread(kafka, topic, self._count)

    def mark_sent(self, index: int, at: float) -> None:
        """Record that event ``index`` was handed to the producer at ``at``."""
        self.sent[index] = at

    def restart_rate(self) -> None:
        """Time :meth:`rate` from the next slate on, leaving out those read so far.

        Call it only while no slate is on its way, so that none is counted
        against the wrong start.
        """
        self._slates_before_rate = self.slates
        self.first_at = None

    def rate(self) -> float:
        """Return slates per second between the first and the last slate timed."""
        timed = self.slates - self._slates_before_rate
        if self.first_at is None or self.last_at is None or timed < 2:
            return 0.0
        return (timed - 1) / max(1e-9, self.last_at - self.first_at)

    def summary(self) -> Mapping[str, object]:
        """Return the counts and latencies read so far."""
        return {
            "slates": self.slates,
            "duplicate_slates": self.duplicates,
            "unknown_slates": self.unknown,
            "invalid_messages": self.invalid,
            "mean_slate_bytes": self.slate_bytes / max(1, self.slates),
            "event_to_slate_ms": self.end_to_end.percentiles(),
            "in_process_ms": self.in_process.percentiles(),
            "model_versions": sorted(self.model_versions),
        }

    def close(self) -> None:
        """Stop the thread and close the consumer."""
        self._messages.close()

    def _count(self, value: bytes, now: float) -> None:
        try:
            slate = Slate.model_validate_json(value, strict=True)
        except ValidationError:
            self.invalid += 1
            return
        index = event_index(slate.trigger_event_id)
        if index is None:
            self.unknown += 1
            return
        sent_at = self.sent.pop(index, None)
        if sent_at is None:
            # Either a second slate for an event that already has one, or the
            # slate of an event that the bench did not send.
            if _has_bit(self._answered, index):
                self.duplicates += 1
            else:
                self.unknown += 1
            return
        _set_bit(self._answered, index)
        self.slates += 1
        self.slate_bytes += len(value)
        self.first_at = self.first_at or now
        self.last_at = now
        self.end_to_end.add((now - sent_at) * 1000.0)
        self.in_process.add(slate.latency_ms)
        self.model_versions.add(slate.model_version)
        user = slate.user_id[2:]
        if user.isdigit():
            _set_bit(self._users, int(user))


def user_bitmap(users: int) -> bytearray:
    """Return an empty bitmap for ``users`` users."""
    return bytearray((users + 7) // 8)


def _set_bit(bits: bytearray, index: int) -> None:
    if index < len(bits) * 8:
        bits[index // 8] |= 1 << (index % 8)


def _has_bit(bits: bytearray, index: int) -> bool:
    return index < len(bits) * 8 and bool(bits[index // 8] & (1 << (index % 8)))
