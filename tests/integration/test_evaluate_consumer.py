"""The evaluator's Kafka path: topics written by a producer, read to their end."""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer

from schemas.catalog import ItemRecord, catalog_key
from schemas.events import Event, EventType
from schemas.recommendations import CandidateSource, Slate, SlateItem, Surface
from services.common.errors import TopicMissingError
from services.common.kafka import TopicSpec, create_topics, producer_config
from services.common.settings import KafkaSettings, TopicSettings
from services.evaluation.cli import register
from services.evaluation.consumer import read_topics
from services.evaluation.errors import NoSlatesError, ReplayReadTimeoutError
from services.evaluation.prequential import PrequentialEvaluator, evaluate_streams
from services.evaluation.settings import EvaluationSettings

pytestmark = pytest.mark.integration

START = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Replay:
    """What a test wrote to the topics, as the in-memory streams it came from."""

    events: list[Event]
    slates: list[Slate]
    items: list[ItemRecord]


@pytest.fixture
def settings(
    kafka_settings: KafkaSettings, unique_name: Callable[[str], str]
) -> EvaluationSettings:
    topics = TopicSettings(
        events=unique_name("events"),
        catalog=unique_name("catalog"),
        recommendations_prefix=unique_name("recommendations"),
    )
    specs = [TopicSpec(topics.events, 3), TopicSpec(topics.catalog, 2, True)]
    specs += [TopicSpec(topics.recommendations(s.value), 2) for s in Surface]
    create_topics(kafka_settings, specs)
    return EvaluationSettings(
        kafka=kafka_settings,
        topics=topics,
        group_id=unique_name("evaluation"),
        read_timeout_seconds=60.0,
        cutoffs=(5, 10, 20),
    )


def build_replay() -> Replay:
    events, slates = [], []
    for index in range(90):
        user_id = f"u{index % 6}"
        event = Event(
            event_id=f"e{index}",
            event_type=EventType.CART_ADD if index % 10 == 3 else EventType.CLICK,
            user_id=user_id,
            item_id=f"i{(index * 7) % 13}",
            event_time=START + timedelta(seconds=index),
            session_id=f"s-{user_id}",
        )
        events.append(event)
        listed = [f"i{(index * 7 + 7 * 6 + shift) % 13}" for shift in range(4)]
        slates.append(make_slate(event, listed, Surface.PRODUCTS, latency_ms=index))
        if event.event_type is EventType.CART_ADD:
            slates.append(make_slate(event, listed[:2], Surface.BUNDLES, 2.0))
    items = [
        ItemRecord(item_id=f"i{n}", category_id=f"c{n % 3}", updated_at=START)
        for n in range(13)
    ]
    return Replay(events, slates, items)


def make_slate(
    event: Event, item_ids: list[str], surface: Surface, latency_ms: float
) -> Slate:
    return Slate(
        recommendation_id=f"{surface.value}-{event.event_id}",
        surface=surface,
        user_id=event.user_id,
        trigger_event_id=event.event_id,
        items=[
            SlateItem(
                item_id=item_id, rank=rank, score=1.0, source=CandidateSource.TRENDING
            )
            for rank, item_id in enumerate(item_ids, start=1)
        ],
        model_version="heuristic-20260202-abcdef0",
        generated_at=event.event_time + timedelta(milliseconds=latency_ms),
        latency_ms=latency_ms,
    )


def write_replay(settings: EvaluationSettings, replay: Replay) -> None:
    """Produce the replay plus records that are not part of it.

    They are a malformed event, a malformed slate, a bundles slate on the
    products topic and a catalog tombstone.
    """
    topics = settings.topics
    # A long linger packs many records into one batch, the case in which
    # Tansu's ListOffsets end offset is too low.
    producer = Producer(producer_config(settings.kafka, linger_ms=50))
    for item in replay.items:
        producer.produce(topics.catalog, item.model_dump_json(), catalog_key(item))
    producer.produce(topics.catalog, None, catalog_key(replay.items[-1]))
    for event in replay.events:
        producer.produce(topics.events, event.model_dump_json(), event.user_id)
    producer.produce(topics.events, b"{not json", b"u0")
    for slate in replay.slates:
        topic = topics.recommendations(slate.surface.value)
        producer.produce(topic, slate.model_dump_json(), slate.user_id)
    products_topic = topics.recommendations("products")
    producer.produce(products_topic, b'{"items": 3}', b"u1")
    misrouted = make_slate(replay.events[1], ["i1"], Surface.BUNDLES, 1.0)
    producer.produce(products_topic, misrouted.model_dump_json(), misrouted.user_id)
    assert producer.flush(30) == 0


def test_read_topics_reads_every_record_to_the_end(
    settings: EvaluationSettings,
) -> None:
    replay = build_replay()
    write_replay(settings, replay)
    evaluator = PrequentialEvaluator(settings)

    summary = read_topics(evaluator, settings)

    assert summary.records[settings.topics.events] == len(replay.events) + 1
    assert summary.records[settings.topics.catalog] == len(replay.items) + 1
    assert summary.malformed == {
        settings.topics.events: 1,
        settings.topics.recommendations("products"): 2,
    }


def test_consumer_path_matches_in_memory_evaluation(
    settings: EvaluationSettings,
) -> None:
    replay = build_replay()
    write_replay(settings, replay)
    evaluator = PrequentialEvaluator(settings)

    read_topics(evaluator, settings)
    from_kafka = evaluator.evaluate().to_dict()
    in_memory = evaluate_streams(
        replay.events, replay.slates, replay.items[:-1], settings=settings
    ).to_dict()

    assert from_kafka == in_memory
    assert from_kafka["inputs"]["scored_events"] == len(replay.events) - 6
    assert from_kafka["beyond_accuracy"]["cartwheel"]["catalog_items"] == 12
    assert from_kafka["by_surface"]["bundles"]["5"]["count"] > 0


def evaluate_args(
    settings: EvaluationSettings, monkeypatch: pytest.MonkeyPatch, output: Path
) -> argparse.Namespace:
    """Parse 'cartwheel evaluate' for the test's topics, report into ``output``."""
    monkeypatch.setenv("CARTWHEEL_TOPIC_EVENTS", settings.topics.events)
    monkeypatch.setenv("CARTWHEEL_TOPIC_CATALOG", settings.topics.catalog)
    monkeypatch.setenv(
        "CARTWHEEL_TOPIC_RECOMMENDATIONS_PREFIX", settings.topics.recommendations_prefix
    )
    parser = argparse.ArgumentParser(prog="cartwheel")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(
        [
            "evaluate",
            "--bootstrap",
            settings.kafka.bootstrap,
            "--group-id",
            settings.group_id,
            "--output",
            str(output),
        ]
    )


def test_evaluate_command_writes_report_from_topics(
    settings: EvaluationSettings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_replay(settings, build_replay())
    args = evaluate_args(settings, monkeypatch, tmp_path / "report")

    status = args.handler(args)
    output = capsys.readouterr().out

    assert status == 0
    assert (tmp_path / "report" / "report.md").is_file()
    assert (tmp_path / "report" / "latency.png").read_bytes()[:4] == b"\x89PNG"
    assert "session_knn" in output
    assert f"report: {tmp_path / 'report' / 'report.md'}" in output


def test_evaluate_command_reports_malformed_records_skipped(
    settings: EvaluationSettings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    write_replay(settings, build_replay())
    args = evaluate_args(settings, monkeypatch, tmp_path / "report")
    skipped = {
        settings.topics.events: 1,
        settings.topics.recommendations("products"): 2,
    }

    args.handler(args)

    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    by_topic = dict(sorted(skipped.items()))
    assert f"malformed records skipped total=3 by_topic={by_topic}" in warnings
    report = (tmp_path / "report" / "report.md").read_text()
    products = settings.topics.recommendations("products")
    assert f"| malformed records skipped: {products} | 2 |" in report
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["inputs"]["skipped_records"] == skipped


def test_evaluate_command_fails_without_slates(
    settings: EvaluationSettings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    replay = build_replay()
    write_replay(settings, Replay(replay.events, [], replay.items))
    args = evaluate_args(settings, monkeypatch, tmp_path / "report")

    with pytest.raises(NoSlatesError, match="no products slate on topic") as caught:
        args.handler(args)

    output = capsys.readouterr().out
    assert "90 events read" in str(caught.value)
    assert output.startswith("report: ")
    assert "beat" not in output


def test_read_topics_rejects_missing_topic(
    settings: EvaluationSettings, unique_name: Callable[[str], str]
) -> None:
    topics = settings.topics.model_copy(update={"events": unique_name("absent")})
    missing = settings.model_copy(update={"topics": topics})

    with pytest.raises(TopicMissingError, match="absent"):
        read_topics(PrequentialEvaluator(missing), missing)


def test_read_topics_times_out_with_pending_partitions(
    settings: EvaluationSettings,
) -> None:
    clock = itertools.chain([0.0], itertools.repeat(1e9)).__next__

    with pytest.raises(ReplayReadTimeoutError, match="READ_TIMEOUT_SECONDS"):
        read_topics(PrequentialEvaluator(settings), settings, clock=clock)
