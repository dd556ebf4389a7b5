"""The hot path's lag gauge follows the cached watermarks, not only the commits."""

from __future__ import annotations

from collections.abc import Sequence

import redis
from confluent_kafka import KafkaException, Producer, TopicPartition

from schemas.events import Event
from services.common.kafka import producer_config
from services.common.redis_features import AppliedResult, EventPosition
from services.hotpath import metrics
from services.hotpath.consumer import HotPathConsumer
from services.hotpath.settings import HotPathSettings
from tests.librdkafka_logs import unreachable_kafka
from tests.unit.hotpath.test_hotpath_stop import one_event_batch

UNKNOWN = -1001


class WatermarkConsumer:
    """Stands in for the Kafka consumer with set committed offsets and watermarks.

    Each ``consume`` records the partition's lag gauge and then lets the
    cached high watermark of ``growing`` learn of one more event.
    """

    def __init__(
        self,
        committed: dict[int, int] | None,
        highs: dict[int, int],
        growing: int = 0,
        stop_after: int = 0,
    ) -> None:
        self.group = committed
        self.highs = highs
        self.growing = growing
        self.stop_after = stop_after
        self.seen_lags: list[float | None] = []
        self.hotpath: HotPathConsumer | None = None

    def committed(
        self, partitions: list[TopicPartition], timeout: float
    ) -> list[TopicPartition]:
        if self.group is None:
            raise KafkaException("group coordinator unavailable")
        offsets = self.group
        return [
            TopicPartition(tp.topic, tp.partition, offsets.get(tp.partition, UNKNOWN))
            for tp in partitions
        ]

    def get_watermark_offsets(
        self, partition: TopicPartition, cached: bool
    ) -> tuple[int, int]:
        assert cached
        return 0, self.highs.get(partition.partition, UNKNOWN)

    def pause(self, partitions: list[TopicPartition]) -> None:
        pass

    def resume(self, partitions: list[TopicPartition]) -> None:
        pass

    def consume(self, num_messages: int, timeout: float) -> list[object]:
        self.seen_lags.append(lag_series().get(str(self.growing)))
        self.highs[self.growing] += 1
        if self.hotpath is not None and len(self.seen_lags) >= self.stop_after:
            self.hotpath.stop()
        return []


class RedisDownStore:
    """Fails every batch as Redis does while it is unreachable."""

    def apply_batch(
        self, events: Sequence[Event], positions: Sequence[EventPosition]
    ) -> list[AppliedResult]:
        raise redis.exceptions.ConnectionError("Connection refused")


def make_hotpath(consumer: WatermarkConsumer) -> HotPathConsumer:
    kafka = unreachable_kafka()
    settings = HotPathSettings(
        kafka=kafka,
        is_emitting_training_examples=False,
        retry_initial_seconds=0.01,
        retry_max_seconds=0.01,
    )
    return HotPathConsumer(
        settings,
        consumer,  # type: ignore[arg-type]
        Producer(producer_config(kafka, is_polled_steadily=True)),
        RedisDownStore(),  # type: ignore[arg-type]
    )


def assign(hotpath: HotPathConsumer, consumer: object, *partitions: int) -> None:
    hotpath._on_assign(
        consumer,  # type: ignore[arg-type]
        [TopicPartition("events", partition) for partition in partitions],
    )


def lose(hotpath: HotPathConsumer, consumer: object, *partitions: int) -> None:
    hotpath._on_lost(
        consumer,  # type: ignore[arg-type]
        [TopicPartition("events", partition) for partition in partitions],
    )


def lag_series() -> dict[str, float]:
    return {
        sample.labels["partition"]: sample.value
        for sample in metrics.CONSUMER_LAG.collect()[0].samples
    }


def test_lag_follows_watermark_during_retry() -> None:
    consumer = WatermarkConsumer({0: 10}, {0: 10}, growing=0, stop_after=4)
    hotpath = make_hotpath(consumer)
    consumer.hotpath = hotpath
    assign(hotpath, consumer, 0)

    is_processed = hotpath._process(one_event_batch(), received_at=0.0)
    hotpath._on_revoke(
        consumer,  # type: ignore[arg-type]
        [TopicPartition("events", 0)],
    )

    assert not is_processed
    assert consumer.seen_lags == [0.0, 1.0, 2.0, 3.0]
    assert "0" not in lag_series()


def test_assigned_partitions_get_series() -> None:
    consumer = WatermarkConsumer({3: 4}, {3: 9, 4: 6})
    hotpath = make_hotpath(consumer)

    assign(hotpath, consumer, 3, 4, 5)
    before = lag_series()
    consumer.highs[5] = 2
    hotpath._poll_background()
    after = lag_series()
    lose(hotpath, consumer, 3, 4, 5)

    assert before.get("3") == 5.0
    assert before.get("4") == 6.0
    assert "5" not in before
    assert after.get("5") == 2.0


def test_unreadable_committed_offset_leaves_no_series() -> None:
    consumer = WatermarkConsumer(None, {6: 8})
    hotpath = make_hotpath(consumer)

    assign(hotpath, consumer, 6)
    hotpath._poll_background()
    series = lag_series()
    hotpath._lag.committed({6: 5})
    committed_series = lag_series()
    lose(hotpath, consumer, 6)

    assert "6" not in series
    assert committed_series.get("6") == 3.0
