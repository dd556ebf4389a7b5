"""The sliding window of recent training examples that a refresh trains on."""

from __future__ import annotations

import heapq
import logging
from collections import OrderedDict
from datetime import UTC, datetime, timedelta

from schemas.training import TrainingExample
from services.trainer.metrics import EXAMPLES_EXPIRED, WINDOW_EXAMPLES

__all__ = ["ExampleWindow"]

logger = logging.getLogger(__name__)


class ExampleWindow:
    """Recent examples in memory, deduplicated by ``event_id``.

    The window spans ``window_seconds`` of event time back from the newest
    example seen. Beyond ``max_examples`` the examples that arrived first are
    dropped, which bounds memory whatever the event rate.

    The span follows event time, not the clock, so one example far newer than
    the rest (a live event among a replay of 2019 events) empties the window,
    and the older examples that arrive after it are skipped. Both are counted
    in ``cartwheel_trainer_examples_expired_total``, and a drop of more than
    half the window at once, or a first skipped example, logs one WARNING.
    The warnings repeat at most once per window span of event time.

    Args:
        window_seconds: event-time span kept.
        max_examples: most examples held at once.
    """

    # LIMITATION(L-40): the window lives in the trainer's memory (a few KB per
    # example), so a restarted trainer re-reads the topic to refill it and
    # max_examples caps how much history one refresh can see.
    def __init__(self, window_seconds: float, max_examples: int) -> None:
        if window_seconds <= 0 or max_examples < 1:
            raise ValueError(
                f"window_seconds={window_seconds} max_examples={max_examples}; "
                "expected both > 0"
            )
        self._span = timedelta(seconds=window_seconds)
        self._max_examples = max_examples
        self._examples: OrderedDict[str, TrainingExample] = OrderedDict()
        # Event times, oldest first, so that moving the window's end drops
        # exactly the examples it passes. Entries of examples dropped by the
        # cap stay until they reach the top or the heap is rebuilt.
        self._by_time: list[tuple[datetime, str]] = []
        self._newest: datetime | None = None
        self._warned_at: datetime | None = None

    def __len__(self) -> int:
        return len(self._examples)

    def add(self, example: TrainingExample) -> None:
        """Add one example; a redelivered ``event_id`` replaces nothing."""
        if example.event_id in self._examples:
            return
        if self._newest is not None and example.event_time < self._start(self._newest):
            EXAMPLES_EXPIRED.inc()
            if self._is_warning_due():
                self._warn_skipped(example, self._newest)
            return
        self._examples[example.event_id] = example
        heapq.heappush(self._by_time, (example.event_time, example.event_id))
        if self._newest is None or example.event_time > self._newest:
            self._advance(example.event_time)
        while len(self._examples) > self._max_examples:
            self._examples.popitem(last=False)
        if len(self._by_time) > 2 * self._max_examples:
            self._rebuild_heap()
        # Set on every add, so the gauge is right between refreshes too.
        WINDOW_EXAMPLES.set(len(self._examples))

    def snapshot(self) -> list[TrainingExample]:
        """Return the examples in the window, oldest first."""
        WINDOW_EXAMPLES.set(len(self._examples))
        return sorted(
            self._examples.values(), key=lambda ex: (ex.event_time, ex.event_id)
        )

    def _advance(self, newest: datetime) -> None:
        """Move the window's end to ``newest`` and drop what falls out of it."""
        previous, self._newest = self._newest, newest
        previous_count = len(self._examples) - 1
        cutoff = self._start(newest)
        dropped = 0
        while self._by_time and self._by_time[0][0] < cutoff:
            event_time, event_id = heapq.heappop(self._by_time)
            example = self._examples.get(event_id)
            if example is not None and example.event_time == event_time:
                del self._examples[event_id]
                dropped += 1
        EXAMPLES_EXPIRED.inc(dropped)
        if dropped > 0 and 2 * dropped > previous_count and self._is_warning_due():
            logger.warning(
                "training window jumped forward in event time, dropping older "
                "examples dropped=%d examples_before=%d previous_newest=%s newest=%s "
                "window_seconds=%.0f; the window keeps only examples less than "
                "window_seconds before the newest one, so mixing a historical "
                "replay with live events restarts it, and examples older than "
                "%s that arrive later are skipped",
                dropped,
                previous_count,
                previous.isoformat() if previous is not None else None,
                newest.isoformat(),
                self._span.total_seconds(),
                cutoff.isoformat(),
            )

    def _start(self, newest: datetime) -> datetime:
        """Return the oldest event time the window keeps once ``newest`` arrived."""
        try:
            return newest - self._span
        except OverflowError:
            # The span reaches back before the year 1, so nothing is too old.
            return datetime.min.replace(tzinfo=UTC)

    def _warn_skipped(self, example: TrainingExample, newest: datetime) -> None:
        logger.warning(
            "training example older than the window skipped event_id=%s "
            "event_time=%s newest=%s window_seconds=%.0f; examples more than "
            "window_seconds before the newest one are skipped and counted in "
            "cartwheel_trainer_examples_expired_total, as happens when a "
            "historical replay is mixed with live events",
            example.event_id,
            example.event_time.isoformat(),
            newest.isoformat(),
            self._span.total_seconds(),
        )

    def _is_warning_due(self) -> bool:
        """Return True at most once per window span of event time."""
        if self._newest is None:
            return False
        if self._warned_at is not None and self._newest - self._warned_at <= self._span:
            return False
        self._warned_at = self._newest
        return True

    def _rebuild_heap(self) -> None:
        self._by_time = [(ex.event_time, ex.event_id) for ex in self._examples.values()]
        heapq.heapify(self._by_time)
