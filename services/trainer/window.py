"""The sliding window of recent training examples that a refresh trains on."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta

from schemas.training import TrainingExample
from services.trainer.metrics import WINDOW_EXAMPLES

__all__ = ["ExampleWindow"]


class ExampleWindow:
    """Recent examples in memory, deduplicated by ``event_id``.

    The window spans ``window_seconds`` of event time back from the newest
    example seen. Beyond ``max_examples`` the examples that arrived first are
    dropped, which bounds memory whatever the event rate.

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
        self._newest: datetime | None = None

    def __len__(self) -> int:
        return len(self._examples)

    def add(self, example: TrainingExample) -> None:
        """Add one example; a redelivered ``event_id`` replaces nothing."""
        if example.event_id in self._examples:
            return
        if self._newest is not None and example.event_time < self._newest - self._span:
            return
        self._examples[example.event_id] = example
        if self._newest is None or example.event_time > self._newest:
            self._newest = example.event_time
        while len(self._examples) > self._max_examples:
            self._examples.popitem(last=False)

    def snapshot(self) -> list[TrainingExample]:
        """Drop examples older than the span and return the rest, oldest first."""
        if self._newest is not None:
            cutoff = self._newest - self._span
            expired = [
                event_id
                for event_id, example in self._examples.items()
                if example.event_time < cutoff
            ]
            for event_id in expired:
                del self._examples[event_id]
        WINDOW_EXAMPLES.set(len(self._examples))
        return sorted(
            self._examples.values(), key=lambda ex: (ex.event_time, ex.event_id)
        )
