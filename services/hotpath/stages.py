"""The contract between the hot-path consumer and the stages it drives.

The consumer polls a batch, validates it, applies the features in Redis and
then hands the batch to each stage in order: learning, then scoring. Offsets
are committed only after every stage returned and every message the stages
produced was delivered, so a crash replays the batch and the stages must be
idempotent per ``event_id``.

A module whose factories load settings classes of their own may name them in
a ``STAGE_SETTINGS`` dict from function name to classes, as
:mod:`services.scorer.factory` does. The hot path then reports their invalid
variables together with its own before it builds any stage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from schemas.events import Event

__all__ = [
    "AppliedEvent",
    "AssignedStage",
    "PolledStage",
    "Stage",
    "StartedStage",
    "StoppedStage",
]


@dataclass(frozen=True)
class AppliedEvent:
    """An event whose features are already in Redis, with what it looked like before.

    Attributes:
        event: the validated event.
        user_features: the user's features just before the event was applied.
        item_features: the event item's features just before the event.
        received_at: wall-clock Unix seconds when the consumer read the message,
            the start of the event-to-slate latency.
        partition: the ``events`` partition it came from.
        offset: its offset in that partition.
    """

    event: Event
    user_features: Mapping[str, float]
    item_features: Mapping[str, float]
    received_at: float
    partition: int
    offset: int


class Stage(Protocol):
    """A step of the hot path that runs after the features of a batch are stored."""

    name: str

    def process(self, batch: Sequence[AppliedEvent]) -> None:
        """Handle a batch in order; raise to make the consumer retry the batch."""
        ...

    def close(self) -> None:
        """Flush and release resources; called once when the consumer stops."""
        ...


class PolledStage(Stage, Protocol):
    """A stage that also needs a call on every consumer loop, with or without events.

    The consumer calls :meth:`poll` before each consume and while it backs
    off after a failed batch, at least once per poll timeout. A stage with its
    own Kafka client serves the client's callbacks and log lines there.
    """

    def poll(self) -> None:
        """Serve background work without blocking."""
        ...


class StartedStage(Stage, Protocol):
    """A stage that connects to other services only when the hot path starts it.

    Its factory validates settings and builds objects without waiting on any
    server, so an invalid setting is reported before a missing broker. The
    hot path calls :meth:`start` once, after it found the broker and its
    topics and before the first batch.
    """

    def start(self) -> None:
        """Connect to the services the stage follows; raise to stop the start."""
        ...


class AssignedStage(Stage, Protocol):
    """A stage whose state depends on the partitions that this hot path owns.

    The consumer calls :meth:`assigned` from its rebalance callback when it
    gets partitions, before their first batch, with the offset at which each
    one resumes. Partitions without a committed offset are left out. An
    exception is logged and the consumer goes on, because the stage then
    only starts with less state.
    """

    def assigned(self, resume_offsets: Mapping[int, int]) -> None:
        """Prepare for new partitions; ``resume_offsets`` maps each to its offset."""
        ...


class StoppedStage(Stage, Protocol):
    """A stage whose waits on the broker end early when the hot path stops.

    The consumer calls :meth:`stop` when it is asked to stop, from its signal
    handler and possibly during the stage's own :meth:`process`. Once a stop
    finds no broker accepting connections, the stage's waits for deliveries
    raise ``BrokerGoneError`` instead of running to their timeouts. The
    consumer then commits nothing for the batch, which the next consumer
    reads again.
    """

    def stop(self) -> None:
        """Record the stop request and nothing more: it runs in a signal handler."""
        ...
