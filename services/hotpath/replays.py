"""Events applied by an earlier run whose offset commits the broker has lost.

The feature store reports an event as redelivered when Redis records its id
at the same partition and offset. After a crash that is a replay of events
that were applied but not committed, and the stages run again for them so
that their slates are published. A broker can also lose its topics and
consumer groups while Redis keeps its data, as the local Tansu broker does on
a restart. The topics created again start at offset 0, so replaying the same
events matches every recorded position, and the stages would compute each
slate from the state after the whole first replay.

The group's committed offsets tell the two apart: a crash leaves those of the
earlier run, and a lost broker leaves none. So in a partition that was
assigned without a committed offset, a redelivered event that this consumer
has not tried to apply itself was applied by an earlier run that committed
nothing. It is dropped like a duplicate, with one WARNING per partition and
assignment. A consumer that crashed before its group's first commit in a
partition looks the same, so the events it applied get no new slate.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence

from services.common.redis_features import (
    AppliedResult,
    EventPosition,
    EventStatus,
)

__all__ = ["EarlierRunFilter"]

logger = logging.getLogger(__name__)


class EarlierRunFilter:
    """Turns redelivered events of an earlier run with lost commits into duplicates.

    Args:
        topic: the events topic, for the log line.
    """

    def __init__(self, topic: str) -> None:
        self._topic = topic
        # Partitions assigned without a committed offset in the group.
        self._without_commits: set[int] = set()
        # One past the highest offset that this consumer tried to apply.
        self._tried_below: dict[int, int] = {}
        self._warned: set[int] = set()

    def assigned(
        self, partitions: Iterable[int], committed: Mapping[int, int] | None
    ) -> None:
        """Start tracking assigned partitions.

        Args:
            partitions: the assigned partition numbers.
            committed: the group's committed offset of each partition that has
                one; None when they could not be read, which filters nothing.
        """
        for partition in partitions:
            self.forget([partition])
            if committed is not None and partition not in committed:
                self._without_commits.add(partition)

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop the state of revoked or lost partitions."""
        for partition in partitions:
            self._without_commits.discard(partition)
            self._tried_below.pop(partition, None)
            self._warned.discard(partition)

    def start_attempt(self, positions: Sequence[EventPosition]) -> dict[int, int]:
        """Record that these positions are about to be applied.

        Returns:
            The bounds from before this attempt, for :meth:`filter`. An
            attempt that fails midway has still tried its positions, so a
            retry reports them as redelivered and keeps them.
        """
        before = dict(self._tried_below)
        for position in positions:
            bound = self._tried_below.get(position.partition, 0)
            self._tried_below[position.partition] = max(bound, position.offset + 1)
        return before

    def filter(
        self, results: Sequence[AppliedResult], tried_below: Mapping[int, int]
    ) -> list[AppliedResult]:
        """Return ``results`` with the earlier run's redelivered events as duplicates.

        Args:
            results: the feature store's results of one attempt.
            tried_below: what :meth:`start_attempt` returned for it.
        """
        filtered = []
        for result in results:
            position = result.position
            if (
                result.status is EventStatus.REDELIVERED
                and position is not None
                and position.partition in self._without_commits
                and position.offset >= tried_below.get(position.partition, 0)
            ):
                self._warn(position)
                result = dataclasses.replace(result, status=EventStatus.DUPLICATE)
            filtered.append(result)
        return filtered

    def _warn(self, position: EventPosition) -> None:
        if position.partition in self._warned:
            return
        self._warned.add(position.partition)
        logger.warning(
            "events applied by an earlier run arrive again in a partition "
            "without committed offsets, dropped as duplicates; the topic was "
            "probably created again while Redis kept its data "
            "topic=%s partition=%s offset=%s",
            self._topic,
            position.partition,
            position.offset,
        )
