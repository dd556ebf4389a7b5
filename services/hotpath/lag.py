"""The consumer-lag gauge of the hot path, kept current without asking the broker.

The lag of a partition is the fetch high watermark, as librdkafka last learned
it from a fetch response, less the partition's committed position: the offset
committed by this consumer, or read from the group when the partition was
assigned. A partition that the group never committed starts where
``auto.offset.reset=earliest`` puts it, the low watermark, once librdkafka
has learned that. Until both ends are known the partition has no series, so
the gauge never reports a lag of 0 that was not measured.

Only cached watermarks are read, so a refresh costs no broker round trip and
runs on every poll, also while a failing batch waits to retry. The gauge then
counts the stuck batch and what was fetched behind it, where it used to keep
the value of the last commit. It does not count events that arrive later,
though: librdkafka fetches nothing for a paused partition, so its high
watermark stays where the last fetch before the pause left it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from confluent_kafka import Consumer, TopicPartition

from services.hotpath import metrics

__all__ = ["ConsumerLag"]


class ConsumerLag:
    """Tracks the committed position of each assigned partition and sets the gauge.

    Args:
        consumer: the hot path's consumer, read only for cached watermarks.
        topic: the events topic.
    """

    def __init__(self, consumer: Consumer, topic: str) -> None:
        self._consumer = consumer
        self._topic = topic
        # None until the first commit when the group had no committed offset
        # (the low watermark is then the start) or it could not be read.
        self._positions: dict[int, int | None] = {}
        self._starts_at_low: dict[int, bool] = {}

    def assigned(
        self, partitions: Iterable[int], committed: Mapping[int, int] | None
    ) -> None:
        """Start tracking partitions with the group's offsets (None: unreadable).

        A partition missing from a readable ``committed`` has never been
        committed and starts at the low watermark. With unreadable offsets
        the start is unknown, so the partition waits for its first commit.
        """
        for partition in partitions:
            self._positions[partition] = (committed or {}).get(partition)
            self._starts_at_low[partition] = committed is not None
        self.refresh()

    def committed(self, offsets: Mapping[int, int]) -> None:
        """Record offsets that the broker accepted, for partitions still assigned."""
        for partition, offset in offsets.items():
            if partition in self._positions:
                self._positions[partition] = offset
        self.refresh()

    def forget(self, partitions: Iterable[int]) -> None:
        """Stop tracking partitions and drop their series."""
        for partition in partitions:
            self._positions.pop(partition, None)
            self._starts_at_low.pop(partition, None)
            try:
                metrics.CONSUMER_LAG.remove(str(partition))
            except KeyError:
                pass

    def refresh(self) -> None:
        """Set the gauge of every partition whose two ends are known."""
        for partition, position in self._positions.items():
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self._topic, partition), cached=True
            )
            if position is None and self._starts_at_low[partition]:
                position = low if low >= 0 else None
            if position is None or high < 0:
                continue
            metrics.CONSUMER_LAG.labels(str(partition)).set(max(high - position, 0))
