from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator

import pytest

from schemas import Surface
from services.client import consumer
from services.client.consumer import SlateConsumer
from services.common.settings import KafkaSettings, TopicSettings
from tests.librdkafka_logs import unreachable_kafka


@pytest.fixture
def make_consumer() -> Iterator[Callable[[Surface | str], SlateConsumer]]:
    """Build consumers aimed at a free port, and close them after the test."""
    consumers: list[SlateConsumer] = []

    def make(surface: Surface | str) -> SlateConsumer:
        slates = SlateConsumer(
            unreachable_kafka(),
            surface,
            "web",
            topics=TopicSettings(recommendations_prefix="shop"),
        )
        consumers.append(slates)
        return slates

    yield make
    for slates in consumers:
        slates.close()


@pytest.fixture
def built_consumers(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record the confluent-kafka consumers built, instead of building them."""
    built: list[object] = []
    monkeypatch.setattr(consumer, "Consumer", built.append)
    return built


@pytest.mark.parametrize(
    "surface", ["bundles", Surface.BUNDLES], ids=["value", "member"]
)
def test_slate_consumer_accepts_surface_or_its_value(
    surface: Surface | str,
    make_consumer: Callable[[Surface | str], SlateConsumer],
) -> None:
    slates = make_consumer(surface)

    assert slates.topic == "shop.bundles"


@pytest.mark.parametrize("surface", ["product", "PRODUCTS", ""])
def test_slate_consumer_rejects_unknown_surface(
    surface: str, built_consumers: list[object]
) -> None:
    with pytest.raises(ValueError) as caught:
        SlateConsumer(KafkaSettings(), surface, "web")

    assert str(caught.value) == (
        f"unknown surface {surface!r}; expected one of 'products', "
        "'bundles', 'promotions', 'reviews', or a schemas.Surface member"
    )
    assert built_consumers == []


@pytest.mark.parametrize("group_id", ["", " ", "\t"])
def test_slate_consumer_rejects_blank_group_id(
    group_id: str, built_consumers: list[object]
) -> None:
    with pytest.raises(ValueError) as caught:
        SlateConsumer(KafkaSettings(), "products", group_id)

    assert str(caught.value) == (
        f"group_id={group_id!r}; expected the non-blank name of the site's "
        "consumer group, such as 'web'"
    )
    assert built_consumers == []


@pytest.mark.parametrize(
    ("argument", "value", "expected"),
    [
        ("commit_every", 0, "expected an integer of 1 or more"),
        ("dedupe_size", -1, "expected an integer of 0 or more"),
        ("poll_timeout_seconds", -1, "expected a finite number of seconds"),
        ("poll_timeout_seconds", math.nan, "expected a finite number of seconds"),
        ("poll_timeout_seconds", math.inf, "expected a finite number of seconds"),
        ("poll_timeout_seconds", "5", "expected a finite number of seconds"),
        ("poll_timeout_seconds", True, "expected a finite number of seconds"),
        (
            "poll_timeout_seconds",
            2.2e6,
            "expected a finite number of seconds, 0 or more and at most 2147483",
        ),
        (
            "poll_timeout_seconds",
            10**400,
            "expected a finite number of seconds, 0 or more and at most 2147483",
        ),
        ("fetch_wait_ms", -1, "expected an integer from 0 to 300000"),
        ("fetch_wait_ms", 300_001, "expected an integer from 0 to 300000"),
    ],
)
def test_slate_consumer_rejects_number_out_of_range(
    argument: str, value: float, expected: str, built_consumers: list[object]
) -> None:
    with pytest.raises(ValueError) as caught:
        SlateConsumer(KafkaSettings(), "products", "web", **{argument: value})

    assert str(caught.value).startswith(f"{argument}={value!r}; {expected}")
    assert built_consumers == []


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("commit_every", math.nan),
        ("commit_every", 1.5),
        ("commit_every", 5.0),
        ("commit_every", "5"),
        ("commit_every", True),
        ("dedupe_size", math.inf),
        ("dedupe_size", False),
        ("fetch_wait_ms", True),
        ("fetch_wait_ms", 10.0),
    ],
)
def test_slate_consumer_rejects_count_that_is_not_an_int(
    argument: str, value: object, built_consumers: list[object]
) -> None:
    with pytest.raises(ValueError) as caught:
        SlateConsumer(KafkaSettings(), "products", "web", **{argument: value})

    assert str(caught.value).startswith(f"{argument}={value!r}; expected an integer")
    assert built_consumers == []


@pytest.mark.parametrize("timeout_seconds", [-1.0, math.nan, 2.2e6, 10**400])
def test_slate_consumer_poll_rejects_endless_timeout(
    timeout_seconds: float, make_consumer: Callable[[Surface | str], SlateConsumer]
) -> None:
    slates = make_consumer("products")

    with pytest.raises(ValueError, match="^timeout_seconds=.*expected a finite"):
        slates.poll(timeout_seconds)


def test_slate_consumer_poll_raises_after_close(
    make_consumer: Callable[[Surface | str], SlateConsumer],
) -> None:
    slates = make_consumer("products")
    slates.close()

    with pytest.raises(RuntimeError) as caught:
        slates.poll(0)

    assert str(caught.value) == (
        "the slate consumer of topic 'shop.products' is closed; build a new "
        "SlateConsumer to read more slates"
    )


def test_slate_consumer_mark_done_raises_after_close(
    make_consumer: Callable[[Surface | str], SlateConsumer],
) -> None:
    slates = make_consumer("products")
    slates.close()

    with pytest.raises(RuntimeError, match="closed; mark slates done before"):
        slates.mark_done()


class _Message:
    """The parts of a confluent-kafka message that the slate consumer reads."""

    def __init__(self, value: bytes) -> None:
        self._value = value

    def value(self) -> bytes:
        return self._value

    def topic(self) -> str:
        return "shop.products"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 7


def _slate_document(**overrides: object) -> dict[str, object]:
    document: dict[str, object] = {
        "recommendation_id": "r1",
        "surface": "products",
        "user_id": "u1",
        "trigger_event_id": "e1",
        "items": [
            {
                "item_id": "i1",
                "rank": 1,
                "score": 0.5,
                "task_probs": {"click": 0.25, "purchase": 0.0},
                "source": "trending",
            }
        ],
        "model_version": "ranker-20191001-abc1234",
        "generated_at": "2019-10-01T12:00:00Z",
        "latency_ms": 25,
    }
    document.update(overrides)
    return document


def test_slate_consumer_reads_slate_as_published(
    make_consumer: Callable[[Surface | str], SlateConsumer],
) -> None:
    slates = make_consumer("products")
    raw = json.dumps(_slate_document()).encode()

    slate = slates._decode(_Message(raw))  # type: ignore[arg-type]

    assert slate is not None
    assert slate.items[0].task_probs == {"click": 0.25, "purchase": 0.0}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("generated_at", 1546300800),
        ("latency_ms", "25"),
        ("schema_version", True),
        ("items", [{"item_id": "i1", "rank": "1", "score": 0.5, "source": "trending"}]),
    ],
    ids=["unix_seconds_time", "number_as_string", "boolean_version", "string_rank"],
)
def test_slate_consumer_skips_slate_the_json_schema_rejects(
    field: str,
    value: object,
    make_consumer: Callable[[Surface | str], SlateConsumer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    slates = make_consumer("products")
    raw = json.dumps(_slate_document(**{field: value})).encode()

    slate = slates._decode(_Message(raw))  # type: ignore[arg-type]

    assert slate is None
    assert "invalid slate skipped topic=shop.products partition=0 offset=7" in (
        caplog.text
    )
