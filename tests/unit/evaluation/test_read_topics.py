"""Reading the topics for an evaluation, without a broker."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from schemas.events import Event
from schemas.recommendations import Slate, Surface
from services.common.errors import BrokerUnreachableError
from services.common.settings import KafkaSettings
from services.evaluation.consumer import _TopicReader, read_topics
from services.evaluation.prequential import PrequentialEvaluator
from services.evaluation.settings import EvaluationSettings
from services.infra import find_free_port


def test_read_topics_names_bootstrap_without_broker() -> None:
    address = f"127.0.0.1:{find_free_port()}"
    settings = EvaluationSettings(kafka=KafkaSettings(bootstrap=address))

    with pytest.raises(BrokerUnreachableError) as raised:
        read_topics(PrequentialEvaluator(settings), settings)

    assert address in str(raised.value)
    assert "CARTWHEEL_KAFKA_BOOTSTRAP" in str(raised.value)


class _Message:
    """The parts of a confluent-kafka message that the reader calls."""

    def __init__(self, key: bytes, value: bytes, topic: str = "catalog") -> None:
        self._key = key
        self._value = value
        self._topic = topic

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0


@pytest.mark.parametrize(
    ("key", "is_read"),
    [(b"item:z1", True), (b"promotion:z1", False), (b"z1", False)],
    ids=["item_key", "other_kind_key", "no_kind"],
)
def test_reader_picks_catalog_model_by_key(key: bytes, is_read: bool) -> None:
    evaluator = PrequentialEvaluator(EvaluationSettings())
    reader = _TopicReader(evaluator, "events", "catalog", {})
    value = b'{"item_id": "z1", "updated_at": "2019-10-01T00:00:00Z"}'

    reader.handle(_Message(key, value))  # type: ignore[arg-type]

    assert reader.malformed["catalog"] == (0 if is_read else 1)
    assert ("z1" in evaluator._catalog.items) is is_read


def test_reader_skips_slate_of_other_surface(
    make_event: Callable[..., Event],
    make_slate: Callable[..., Slate],
    caplog: pytest.LogCaptureFixture,
) -> None:
    evaluator = PrequentialEvaluator(EvaluationSettings())
    topics = {"slates.products": Surface.PRODUCTS, "slates.bundles": Surface.BUNDLES}
    reader = _TopicReader(evaluator, "events", "catalog", topics)
    slate = make_slate(make_event("e1", "u1", "i1", 0), ["i2"], surface="bundles")

    reader.handle(_Message(b"u1", slate.model_dump_json().encode(), "slates.products"))

    assert reader.malformed == {"slates.products": 1}
    assert evaluator.evaluate().inputs.slates["bundles"] == 0
    assert "slate of surface 'bundles' on the topic of surface 'products'" in (
        caplog.text
    )


def test_reader_skips_slate_with_unix_seconds_as_generated_at(
    make_event: Callable[..., Event], make_slate: Callable[..., Slate]
) -> None:
    evaluator = PrequentialEvaluator(EvaluationSettings())
    reader = _TopicReader(evaluator, "events", "catalog", {"s": Surface.PRODUCTS})
    document = make_slate(make_event("e1", "u1", "i1", 0), ["i2"]).model_dump()
    document["generated_at"] = 1546300800

    reader.handle(_Message(b"u1", json.dumps(document).encode(), "s"))

    assert reader.malformed == {"s": 1}
    assert evaluator.evaluate().inputs.slates["products"] == 0


def test_reader_reads_slate_as_published(
    make_event: Callable[..., Event], make_slate: Callable[..., Slate]
) -> None:
    evaluator = PrequentialEvaluator(EvaluationSettings())
    reader = _TopicReader(evaluator, "events", "catalog", {"s": Surface.PRODUCTS})
    slate = make_slate(make_event("e1", "u1", "i1", 0), ["i2"])

    reader.handle(_Message(b"u1", slate.model_dump_json().encode(), "s"))

    assert reader.malformed == {}
    assert evaluator.evaluate().inputs.slates["products"] == 1


def test_reader_skips_event_with_quantity_as_text(
    make_event: Callable[..., Event],
) -> None:
    evaluator = PrequentialEvaluator(EvaluationSettings())
    reader = _TopicReader(evaluator, "events", "catalog", {})
    document = make_event("e1", "u1", "i1", 0).model_dump(mode="json")
    document["quantity"] = "2"

    reader.handle(_Message(b"u1", json.dumps(document).encode(), "events"))

    assert reader.malformed == {"events": 1}
    assert evaluator.evaluate().inputs.events == 0


def test_reader_reads_event_as_published(make_event: Callable[..., Event]) -> None:
    evaluator = PrequentialEvaluator(EvaluationSettings())
    reader = _TopicReader(evaluator, "events", "catalog", {})
    event = make_event("e1", "u1", "i1", 0)

    reader.handle(_Message(b"u1", event.model_dump_json().encode(), "events"))

    assert reader.malformed == {}
    assert evaluator.evaluate().inputs.events == 1


def test_reader_skips_catalog_record_with_stock_as_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    evaluator = PrequentialEvaluator(EvaluationSettings())
    reader = _TopicReader(evaluator, "events", "catalog", {})
    value = b'{"item_id": "z1", "stock": "5", "updated_at": "2019-10-01T00:00:00Z"}'

    reader.handle(_Message(b"item:z1", value))  # type: ignore[arg-type]

    assert reader.malformed == {"catalog": 1}
    assert "z1" not in evaluator._catalog.items
    assert "stock" in caplog.text
