"""How the API words a message that the broker did not acknowledge."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from services.api.app import create_app
from services.api.delivery import (
    dead_letter_unconfirmed,
    delivery_state,
    flush_on_stop,
)
from services.api.settings import ApiSettings
from services.common.kafka import producer_config
from services.common.settings import KafkaSettings
from services.common.stop_request import StopRequest
from tests.librdkafka_logs import unreachable_kafka

_TIMED_OUT = KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT))
_REFUSED = KafkaException(
    KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "Broker: Topic authorization")
)


def test_dead_letter_unconfirmed_in_time_stays_queued() -> None:
    detail = dead_letter_unconfirmed(_TIMED_OUT, 5.0)

    assert detail == (
        "the broker did not confirm the dead letter within 5 s, so it may or may "
        "not be stored; the API's producer keeps it queued and keeps trying to "
        "send it"
    )


def test_dead_letter_refused_names_broker_error() -> None:
    detail = dead_letter_unconfirmed(_REFUSED, 5.0)

    assert detail.startswith("the broker did not confirm the dead letter (")
    assert "Broker: Topic authorization" in detail
    assert detail.endswith("so it may or may not be stored")


def test_dead_letter_behind_full_queue_was_not_sent() -> None:
    detail = dead_letter_unconfirmed(BufferError("Local: Queue full"), 5.0)

    assert detail == "the API's producer queue is full, so the dead letter was not sent"


@pytest.mark.parametrize(
    ("error", "state"),
    [
        (_TIMED_OUT, "not confirmed, may or may not be stored"),
        (_REFUSED, "not confirmed, may or may not be stored"),
        (BufferError("Local: Queue full"), "not sent"),
    ],
    ids=["timed_out", "refused", "queue_full"],
)
def test_delivery_state_says_whether_message_may_be_stored(
    error: KafkaException | BufferError, state: str
) -> None:
    assert delivery_state(error) == state


def test_flush_on_stop_broker_gone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kafka = unreachable_kafka()
    producer = Producer(producer_config(kafka, is_polled_steadily=True))
    producer.produce("events.dlq", b"dead letter", b"user-1")

    with caplog.at_level(logging.WARNING, logger="services.api.delivery"):
        flush_on_stop(producer, StopRequest(kafka))

    assert [
        r.getMessage() for r in caplog.records if r.name.startswith("services")
    ] == [
        "messages not confirmed on stop error=1 message(s) not confirmed: the "
        f"service is stopping and no broker accepts connections at {kafka.bootstrap}"
    ]


def test_flush_on_stop_counts_from_signal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        kafka = KafkaSettings(bootstrap=f"127.0.0.1:{silent.getsockname()[1]}")
        producer = Producer(producer_config(kafka, is_polled_steadily=True))
        producer.produce("events.dlq", b"dead letter", b"user-1")
        now = [100.0]
        stop = StopRequest(kafka, clock=lambda: now[0])
        stop.set()
        # The wait for open requests took the whole budget.
        now[0] += 10.0

        with caplog.at_level(logging.WARNING, logger="services.api.delivery"):
            flush_on_stop(producer, stop)

    [line] = [r.getMessage() for r in caplog.records if r.name.startswith("services")]
    assert line.startswith("messages not confirmed on stop error=1 message(s)")
    assert line.endswith("so they may or may not be stored")


class FlushRecordingProducer:
    """A producer with nothing queued that records how it was flushed."""

    def __init__(self) -> None:
        self.flushes: list[float] = []

    def poll(self, timeout: float = 0.0) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        self.flushes.append(timeout)
        return 0


def test_app_flushes_producer_when_it_stops() -> None:
    producer = FlushRecordingProducer()
    app = create_app(
        ApiSettings(kafka={"bootstrap": unreachable_kafka().bootstrap}),
        redis_client=None,  # type: ignore[arg-type]
        producer=producer,  # type: ignore[arg-type]
        on_demand=None,
    )

    async def start_and_stop() -> None:
        async with app.router.lifespan_context(app):
            pass

    asyncio.run(start_and_stop())

    assert producer.flushes == [0]
