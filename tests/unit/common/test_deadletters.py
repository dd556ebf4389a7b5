"""DeadLetterWriter against a recording stand-in for confluent_kafka.Producer."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import REGISTRY

from schemas.deadletters import DeadLetter, RejectionReason
from schemas.validation import Rejection
from services.common.deadletters import DeadLetterWriter
from services.common.errors import DeadLetterDeliveryError
from services.common.kafka import is_fatal

REJECTED_AT = datetime(2019, 10, 1, tzinfo=UTC)


class RecordingProducer:
    def __init__(self, delivery_error: Any = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.delivery_error = delivery_error
        self._callbacks: list[Callable[[Any, Any], None]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.sent.append({"topic": topic, **kwargs})
        self._callbacks.append(kwargs["on_delivery"])

    def poll(self, timeout: float = 0.0) -> int:
        return 0

    def flush(self, timeout: float = 0.0) -> int:
        for callback in self._callbacks:
            callback(self.delivery_error, _Message())
        self._callbacks.clear()
        return 0


class _Message:
    def topic(self) -> str:
        return "events.dlq"


REJECTION = Rejection(RejectionReason.UNKNOWN_EVENT_TYPE, "field 'event_type' ...")


def send(writer: DeadLetterWriter) -> None:
    writer.send(
        REJECTION,
        raw_key=b"u-1",
        raw_value=b'{"event_type": "view"}',
        source_topic="events",
        source_partition=2,
        source_offset=41,
    )


def make_writer(producer: RecordingProducer) -> DeadLetterWriter:
    return DeadLetterWriter(
        producer,  # type: ignore[arg-type]
        "events.dlq",
        "features",
        clock=lambda: REJECTED_AT,
    )


def test_dead_letter_writer_keys_by_original_key() -> None:
    producer = RecordingProducer()

    send(make_writer(producer))

    sent = producer.sent[0]
    letter = DeadLetter.model_validate_json(sent["value"])
    assert sent["topic"] == "events.dlq"
    assert sent["key"] == b"u-1"
    assert letter.reason is RejectionReason.UNKNOWN_EVENT_TYPE
    assert (letter.source_topic, letter.source_partition) == ("events", 2)
    assert letter.source_offset == 41
    assert base64.b64decode(letter.raw_value_base64 or "") == b'{"event_type": "view"}'
    assert letter.rejected_at == REJECTED_AT
    assert letter.service == "features"


def test_dead_letter_writer_keeps_tombstone_as_null() -> None:
    producer = RecordingProducer()
    writer = make_writer(producer)

    writer.send(
        Rejection(RejectionReason.EMPTY_VALUE, "message value is empty"),
        raw_key=None,
        raw_value=None,
        source_topic="events",
        source_partition=0,
        source_offset=0,
    )

    letter = DeadLetter.model_validate_json(producer.sent[0]["value"])
    assert letter.raw_value_base64 is None
    assert letter.raw_key_base64 is None


def test_dead_letter_writer_counts_by_reason() -> None:
    labels = {"service": "features", "reason": "unknown_event_type"}
    name = "cartwheel_dead_letters_total"
    before = REGISTRY.get_sample_value(name, labels) or 0.0

    send(make_writer(RecordingProducer()))

    assert REGISTRY.get_sample_value(name, labels) == before + 1


def test_dead_letter_writer_flush_raises_on_failed_delivery() -> None:
    writer = make_writer(
        RecordingProducer(
            delivery_error=KafkaError(KafkaError._TRANSPORT, "broker down")
        )
    )
    send(writer)

    with pytest.raises(DeadLetterDeliveryError, match="broker down"):
        writer.flush()


def test_dead_letter_writer_cuts_huge_value() -> None:
    producer = RecordingProducer()
    writer = make_writer(producer)
    raw = b"x" * 2_000_000

    writer.send(
        REJECTION,
        raw_key=b"u-1",
        raw_value=raw,
        source_topic="events",
        source_partition=0,
        source_offset=7,
    )

    letter = DeadLetter.model_validate_json(producer.sent[0]["value"])
    assert letter.raw_value_base64 is not None
    stored_value = base64.b64decode(letter.raw_value_base64)
    assert raw.startswith(stored_value)
    assert len(stored_value) < 1_000_000
    assert f"of {len(raw)} bytes" in letter.message
    assert len(letter.message) <= 1024


def test_dead_letter_writer_raises_fatal_delivery_error() -> None:
    fatal = KafkaError(KafkaError._FATAL, "sequence numbers lost", fatal=True)
    writer = make_writer(RecordingProducer(delivery_error=fatal))
    send(writer)

    with pytest.raises(KafkaException) as caught:
        writer.flush()

    assert is_fatal(caught.value)


def test_dead_letter_flood_is_throttled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer = make_writer(RecordingProducer())
    # A topic of its own, so lines of other tests do not hold these back.
    topic = "flood-events"
    other = Rejection(RejectionReason.INVALID_JSON, "message value is not JSON")

    with caplog.at_level("WARNING", logger="services.common.deadletters"):
        for offset in range(50):
            writer.record(REJECTION, topic, offset % 3, offset)
            writer.record(other, topic, offset % 3, offset)

    lines = [r.getMessage() for r in caplog.records if "dead-lettered" in r.message]
    assert len(lines) == 2
    assert "reason=unknown_event_type" in lines[0]
    assert "reason=invalid_json" in lines[1]
