from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from schemas.events import EventType
from schemas.recommendations import Slate, Surface
from services.common.errors import BrokerGoneError
from services.common.settings import TopicSettings
from services.common.stop_request import StopRequest
from services.scorer.protocols import Relation
from services.scorer.publisher import SlateDeliveryError, SlatePublisher
from services.scorer.session_knn import SessionIndex
from services.scorer.settings import ScorerSettings
from services.scorer.slates import SlateBuilder
from services.scorer.stage import ScoringStage
from services.scorer.warmup import WarmupResult
from tests.librdkafka_logs import unreachable_kafka


class FakeProducer:
    """Records produced messages; ``fail`` makes every delivery report an error."""

    def __init__(self, fail: bool = False) -> None:
        self.messages: list[tuple[str, bytes, bytes]] = []
        self.fail = fail
        self.fail_with: KafkaError | None = None
        self._callbacks: list[Callable[..., None]] = []

    def produce(self, topic: str, key: bytes, value: bytes, on_delivery: Any) -> None:
        self.messages.append((topic, key, value))
        self._callbacks.append(on_delivery)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        for callback in self._callbacks:
            error = self.fail_with or KafkaError(KafkaError._TRANSPORT, "broker down")
            callback(error if self.fail or self.fail_with else None, _Message())
        self._callbacks.clear()
        return 0


class QueuedProducer(FakeProducer):
    """Keeps every message queued, as when the broker is gone."""

    def flush(self, timeout: float) -> int:
        return len(self.messages)


class _Message:
    def topic(self) -> str:
        return "recommendations.products"


def _stage(
    store,
    producer: FakeProducer,
    warmer: _RecordingWarmer | None = None,
    stop: StopRequest | None = None,
) -> ScoringStage:
    sessions = SessionIndex(100, 10, 10)
    builder = SlateBuilder(store, sessions, ScorerSettings(), clock=lambda: 2000.0)
    publisher = SlatePublisher(producer, TopicSettings(), None, "cw", 60, stop=stop)  # type: ignore[arg-type]
    return ScoringStage(builder, sessions, publisher, warmer=warmer)


class _RecordingWarmer:
    """Records each warm-up request and reports it complete."""

    def __init__(self) -> None:
        self.requests: list[dict[int, int]] = []

    def __call__(self, resume_offsets: Mapping[int, int]) -> WarmupResult:
        self.requests.append(dict(resume_offsets))
        return WarmupResult(events=0, skipped=0, is_complete=True)


def _slates(producer: FakeProducer) -> list[Slate]:
    return [Slate.model_validate_json(value) for _, _, value in producer.messages]


def test_stage_publishes_slates_keyed_by_user_on_surface_topics(
    store, make_event, make_applied
) -> None:
    store.relations[Relation.COVISITATION] = {"i1": [("n", 1.0)]}
    producer = FakeProducer()
    event = make_event(event_type=EventType.CART_ADD)

    _stage(store, producer).process([make_applied(event)])

    topics = [topic for topic, _, _ in producer.messages]
    assert topics == [
        "recommendations.products",
        "recommendations.bundles",
        "recommendations.promotions",
    ]
    assert {key for _, key, _ in producer.messages} == {b"u1"}


def test_stage_publishes_same_slates_for_replayed_batch(
    store, make_event, make_applied
) -> None:
    store.relations[Relation.COVISITATION] = {"i1": [("n", 1.0), ("m", 0.5)]}
    producer = FakeProducer()
    stage = _stage(store, producer)
    batch = [
        make_applied(make_event()),
        make_applied(make_event(item_id="i2"), offset=1),
    ]

    stage.process(batch)
    first = _slates(producer)
    producer.messages.clear()
    stage.process(batch)
    second = _slates(producer)

    assert [s.recommendation_id for s in first] == [s.recommendation_id for s in second]
    assert [s.items for s in first] == [s.items for s in second]


def test_stage_sees_its_own_event_in_session_neighbours(
    store, make_event, make_applied
) -> None:
    producer = FakeProducer()
    stage = _stage(store, producer)
    stage.process([make_applied(make_event(user_id="u2", session_id="x", item_id="a"))])
    stage.process([make_applied(make_event(user_id="u2", session_id="x", item_id="b"))])
    producer.messages.clear()

    stage.process([make_applied(make_event(item_id="a"))])

    products = next(s for s in _slates(producer) if s.surface is Surface.PRODUCTS)
    assert [entry.item_id for entry in products.items] == ["b"]


def test_stage_raises_when_a_slate_is_not_delivered(
    store, make_event, make_applied
) -> None:
    stage = _stage(store, FakeProducer(fail=True))

    with pytest.raises(SlateDeliveryError, match="not delivered"):
        stage.process([make_applied(make_event())])


def test_stage_raises_broker_gone_after_stop_when_broker_refuses(
    store, make_event, make_applied
) -> None:
    stage = _stage(store, QueuedProducer(), stop=StopRequest(unreachable_kafka()))

    stage.stop()

    with pytest.raises(BrokerGoneError, match="not confirmed"):
        stage.process([make_applied(make_event())])


def test_stage_measures_latency_from_received_at(
    store, make_event, make_applied
) -> None:
    producer = FakeProducer()

    _stage(store, producer).process([make_applied(make_event(), received_at=1999.98)])

    assert _slates(producer)[0].latency_ms == pytest.approx(20.0)


def test_stage_raises_fatal_delivery_error(store, make_event, make_applied) -> None:
    producer = FakeProducer()
    stage = _stage(store, producer)
    fatal = KafkaError(KafkaError._FATAL, "sequence numbers lost", fatal=True)
    producer.fail_with = fatal

    with pytest.raises(KafkaException):
        stage.process([make_applied(make_event())])


def test_warmup_skips_partitions_already_indexed(
    store, make_event, make_applied
) -> None:
    warmer = _RecordingWarmer()
    stage = _stage(store, FakeProducer(), warmer)
    stage.process([make_applied(make_event(), offset=4)])

    stage.assigned({0: 5, 1: 3})
    stage.assigned({0: 5, 1: 3})
    stage.assigned({1: 7})

    assert warmer.requests == [{1: 3}, {1: 7}]
