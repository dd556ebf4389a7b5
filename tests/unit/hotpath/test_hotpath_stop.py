"""The hot path's stop: stages are notified, and a gone broker is not awaited."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer, TopicPartition

from schemas.events import Event, EventType
from services.common.errors import BrokerGoneError
from services.common.kafka import producer_config
from services.common.redis_features import AppliedResult, EventPosition, EventStatus
from services.common.settings import KafkaSettings
from services.hotpath.batch import Batch
from services.hotpath.consumer import HotPathConsumer
from services.hotpath.settings import HotPathSettings
from services.hotpath.stages import AppliedEvent, Stage
from services.scorer.publisher import SlateDeliveryError
from tests.librdkafka_logs import unreachable_kafka

GIVE_UP_LINE = "broker refuses connections, stopping without committing offsets"


class RecordingConsumer:
    """Stands in for the Kafka consumer and records each commit."""

    def __init__(self) -> None:
        self.commits: list[list[TopicPartition]] = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append(offsets)

    def get_watermark_offsets(
        self, partition: TopicPartition, cached: bool
    ) -> tuple[int, int]:
        return 0, -1

    def close(self) -> None:
        pass


class OneEventStore:
    """Applies every batch as one new event."""

    def apply_batch(
        self, events: Sequence[Event], positions: Sequence[EventPosition]
    ) -> list[AppliedResult]:
        return [
            AppliedResult(event, EventStatus.APPLIED, {}, {}, position)
            for event, position in zip(events, positions, strict=True)
        ]


class StoppingStage:
    """A stage whose process meets a stop and gives up on the broker."""

    name = "stopping"

    def __init__(self) -> None:
        self.stops = 0
        self.on_process: Callable[[], None] = lambda: None

    def process(self, batch: Sequence[AppliedEvent]) -> None:
        self.on_process()
        raise BrokerGoneError("1 message(s) not confirmed")

    def close(self) -> None:
        pass

    def stop(self) -> None:
        self.stops += 1


class PlainStage:
    name = "plain"

    def process(self, batch: Sequence[AppliedEvent]) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def listening_kafka() -> Iterator[KafkaSettings]:
    """Kafka settings for a loopback port that accepts connections."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield KafkaSettings(bootstrap=f"127.0.0.1:{server.getsockname()[1]}")


def make_hotpath(
    kafka: KafkaSettings,
    consumer: RecordingConsumer,
    stages: Sequence[Stage] = (),
    producer: Producer | None = None,
) -> HotPathConsumer:
    settings = HotPathSettings(kafka=kafka, is_emitting_training_examples=False)
    return HotPathConsumer(
        settings,
        consumer,  # type: ignore[arg-type]
        producer or Producer(producer_config(kafka, is_polled_steadily=True)),
        OneEventStore(),  # type: ignore[arg-type]
        stages,
    )


def one_event_batch() -> Batch:
    event = Event(
        event_id="e1",
        event_type=EventType.CLICK,
        user_id="u1",
        item_id="i1",
        event_time=datetime(2019, 10, 1, 12, tzinfo=UTC),
        session_id="s1",
    )
    return Batch(events=[event], positions=[EventPosition(0, 0)], next_offsets={0: 1})


def give_up_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.getMessage().startswith(GIVE_UP_LINE)
    ]


def test_stop_tells_the_stages_that_have_stop() -> None:
    stage = StoppingStage()
    hotpath = make_hotpath(
        unreachable_kafka(), RecordingConsumer(), [PlainStage(), stage]
    )

    hotpath.stop()

    assert stage.stops == 1


def test_commit_given_up_with_one_warning_when_stopping_and_broker_gone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = RecordingConsumer()
    kafka = unreachable_kafka()
    hotpath = make_hotpath(kafka, consumer)
    hotpath.stop()

    with caplog.at_level(logging.WARNING, logger="services.hotpath.consumer"):
        hotpath._commit({0: 5})
        hotpath._commit({1: 7})

    assert consumer.commits == []
    assert give_up_lines(caplog) == [
        f"{GIVE_UP_LINE}; the next consumer reads the events since the last commit "
        f"again bootstrap={kafka.bootstrap} group=cartwheel-hotpath"
    ]


def test_commit_runs_when_stopping_and_broker_accepts(
    listening_kafka: KafkaSettings,
) -> None:
    consumer = RecordingConsumer()
    hotpath = make_hotpath(listening_kafka, consumer)
    hotpath.stop()

    hotpath._commit({0: 5})

    assert consumer.commits == [[TopicPartition("events", 0, 5)]]


def test_flush_gives_up_when_stopping_and_broker_gone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kafka = unreachable_kafka()
    producer = Producer(producer_config(kafka, is_polled_steadily=True))
    producer.produce("events.dlq", b"value", b"user-1")
    hotpath = make_hotpath(kafka, RecordingConsumer(), producer=producer)
    hotpath.stop()

    with caplog.at_level(logging.WARNING, logger="services.hotpath.consumer"):
        is_flushed = hotpath._flush(Batch())

    assert not is_flushed
    assert len(give_up_lines(caplog)) == 1


def test_process_ends_batch_without_traceback_when_a_stage_gives_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stage = StoppingStage()
    hotpath = make_hotpath(unreachable_kafka(), RecordingConsumer(), [stage])
    stage.on_process = hotpath.stop

    with caplog.at_level(logging.WARNING, logger="services.hotpath.consumer"):
        is_processed = hotpath._process(one_event_batch(), received_at=0.0)

    assert not is_processed
    assert len(give_up_lines(caplog)) == 1
    assert all(record.exc_info is None for record in caplog.records)


class UndeliveredStage(PlainStage):
    """A stage whose close finds its slates still queued for the broker."""

    name = "undelivered"

    def close(self) -> None:
        raise SlateDeliveryError("2 slate(s) still queued after 5 s")


def test_close_logs_undelivered_stage_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hotpath = make_hotpath(
        unreachable_kafka(), RecordingConsumer(), [UndeliveredStage()]
    )

    with caplog.at_level(logging.WARNING, logger="services.hotpath.consumer"):
        hotpath.close()

    lines = [r for r in caplog.records if r.getMessage().startswith("stage close:")]
    assert len(lines) == 1
    assert lines[0].levelno == logging.WARNING
    assert lines[0].exc_info is None


class HeldCommitConsumer(RecordingConsumer):
    """A consumer whose commit waits until released, as on a frozen broker."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.closes = 0

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.release.wait(30)
        super().commit(offsets, asynchronous)

    def close(self) -> None:
        self.closes += 1


def test_pending_commit_skips_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = HeldCommitConsumer()
    hotpath = make_hotpath(unreachable_kafka(), consumer)
    # The stop arrives while the commit waits for the broker.
    threading.Timer(0.2, hotpath.stop).start()

    with caplog.at_level(logging.WARNING, logger="services.hotpath.consumer"):
        hotpath._commit({0: 5})
        hotpath.close()
    consumer.release.set()

    assert consumer.closes == 0
    assert len(give_up_lines(caplog)) == 1
