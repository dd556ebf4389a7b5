from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from schemas.deadletters import RejectionReason
from services.client import producer as producer_module
from services.client.producer import EventProducer
from services.common.errors import InvalidEventError
from tests.event_fields import CLICK_FIELDS
from tests.librdkafka_logs import unreachable_kafka


class _RecordingProducer:
    """Stands in for confluent-kafka's Producer and records each message."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.messages: list[tuple[str, bytes, bytes]] = []

    def list_topics(self, timeout: float) -> SimpleNamespace:
        return SimpleNamespace(topics={"events": None})

    def produce(self, topic: str, key: bytes, value: bytes, on_delivery: Any) -> None:
        self.messages.append((topic, key, value))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


@pytest.fixture
def make_producer(monkeypatch: pytest.MonkeyPatch) -> Callable[..., EventProducer]:
    """Build producers on a recording client, without a broker."""
    monkeypatch.setattr(producer_module, "wait_for_broker", lambda *a, **k: None)
    monkeypatch.setattr(producer_module, "Producer", _RecordingProducer)

    def make(**arguments: Any) -> EventProducer:
        return EventProducer(unreachable_kafka(), **arguments)

    return make


@pytest.mark.parametrize(
    ("field", "value", "type_name"),
    [
        ("price", Decimal("1.5"), "Decimal"),
        ("quantity", np.int64(2), "int64"),
        ("item_id", b"i-1", "bytes"),
        ("context", {"tags": {"a"}}, "set"),
    ],
    ids=["decimal", "numpy-int", "bytes", "nested-set"],
)
def test_send_rejects_value_without_json_form(
    make_producer: Callable[..., EventProducer],
    field: str,
    value: object,
    type_name: str,
) -> None:
    producer = make_producer()

    with pytest.raises(InvalidEventError) as caught:
        producer.send({**CLICK_FIELDS, field: value})

    assert caught.value.rejection.reason is RejectionReason.WRONG_TYPE
    assert caught.value.rejection.message.startswith(
        f"field {field!r} has the {type_name} value "
    )
    assert "which has no JSON form; expected a str, int" in str(caught.value)


def test_send_rejects_naive_datetime(
    make_producer: Callable[..., EventProducer],
) -> None:
    producer = make_producer()

    with pytest.raises(InvalidEventError) as caught:
        producer.send({**CLICK_FIELDS, "event_time": datetime(2019, 10, 1)})

    assert caught.value.rejection.reason is RejectionReason.INVALID_TIME
    assert caught.value.rejection.message == (
        "field 'event_time' is a naive datetime datetime.datetime(2019, 10, 1, 0, 0); "
        "expected a tz-aware datetime or an RFC 3339 string with a UTC offset"
    )


@pytest.mark.parametrize(
    ("event", "type_name"),
    [([("event_id", "e-1")], "list"), ("e-1", "str"), (None, "NoneType")],
    ids=["pairs", "string", "none"],
)
def test_send_rejects_event_that_is_not_a_mapping(
    make_producer: Callable[..., EventProducer], event: Any, type_name: str
) -> None:
    producer = make_producer()

    with pytest.raises(InvalidEventError) as caught:
        producer.send(event)

    assert caught.value.rejection.reason is RejectionReason.NOT_AN_OBJECT
    assert caught.value.rejection.message.startswith(
        f"event is a {type_name}; expected an Event or a mapping"
    )


def test_send_rejects_key_without_json_form(
    make_producer: Callable[..., EventProducer],
) -> None:
    producer = make_producer()

    with pytest.raises(InvalidEventError, match="use string keys") as caught:
        producer.send({**CLICK_FIELDS, ("a", "b"): 1})

    assert caught.value.rejection.reason is RejectionReason.INVALID_JSON


def _self_containing_list() -> list[object]:
    loop: list[object] = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("context", _self_containing_list(), "Circular reference detected"),
        ("context", {(1, 2): "a"}, "keys must be str, int, float, bool or None"),
        ("quantity", 10**5000, "Exceeds the limit (4300 digits)"),
    ],
    ids=["self-containing", "tuple-key", "huge-int"],
)
def test_send_rejects_unwritable_field_value(
    make_producer: Callable[..., EventProducer],
    field: str,
    value: object,
    error: str,
) -> None:
    producer = make_producer()

    with pytest.raises(InvalidEventError) as caught:
        producer.send({**CLICK_FIELDS, field: value})

    assert caught.value.rejection.reason is RejectionReason.INVALID_JSON
    assert caught.value.rejection.message.startswith(
        f"field {field!r} has no JSON form: {error}"
    )


@pytest.mark.parametrize(
    "now", [datetime(2026, 12, 6), "2026"], ids=["naive", "string"]
)
def test_send_rejects_naive_or_text_now(
    make_producer: Callable[..., EventProducer], now: Any
) -> None:
    producer = make_producer()

    with pytest.raises(ValueError) as caught:
        producer.send(CLICK_FIELDS, now=now)

    assert str(caught.value) == (
        f"now={now!r}; expected None or a tz-aware datetime, such as datetime.now(UTC)"
    )


def test_send_queues_valid_event_keyed_by_user(
    make_producer: Callable[..., EventProducer],
) -> None:
    producer = make_producer()

    producer.send(CLICK_FIELDS)

    [(topic, key, _)] = producer._producer.messages  # type: ignore[attr-defined]
    assert (topic, key) == ("events", b"u-1")


def test_send_raises_after_close(
    make_producer: Callable[..., EventProducer],
) -> None:
    producer = make_producer()
    producer.close()

    with pytest.raises(RuntimeError) as caught:
        producer.send(CLICK_FIELDS)

    assert str(caught.value) == (
        "the event producer of topic 'events' is closed; build a new "
        "EventProducer to send more events"
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        *(
            (
                {"connect_timeout_seconds": seconds},
                f"connect_timeout_seconds={seconds!r}; expected a finite number "
                "of seconds, above 0 and at most 2147483, the range that "
                "librdkafka accepts",
            )
            for seconds in (-1, 0, math.nan, math.inf, True, "10", 2.2e6, 10**400)
        ),
        *(
            (
                {"linger_ms": linger_ms},
                f"linger_ms={linger_ms!r}; expected an integer from 0 to 900000, "
                "the range that librdkafka accepts",
            )
            for linger_ms in (-1, 900_001, 1.5, False)
        ),
    ],
)
def test_producer_rejects_invalid_argument(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        EventProducer(unreachable_kafka(), **arguments)

    assert str(caught.value) == message
