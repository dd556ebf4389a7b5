from __future__ import annotations

import base64
import codecs
import gzip
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError

from schemas.catalog import ItemRecord, ReviewRecord
from schemas.deadletters import DeadLetter
from schemas.events import Event, EventType
from services.common.settings import KafkaSettings, TopicSettings
from services.replay.errors import ReplayDeliveryError, ReplayFileError
from services.replay.replayer import Replayer, _DeliveryFailures, serialize_events
from services.replay.settings import Settings

from .fakes import FakeProducer

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def settings() -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap="127.0.0.1:9"),
        topics=TopicSettings(events="ev", dead_letters="dlq", catalog="cat"),
    )


def _replayer(
    settings: Settings,
    clock: list[float] | None = None,
    failure: str | None = None,
) -> tuple[Replayer, list[FakeProducer]]:
    producers: list[FakeProducer] = []
    clock = clock if clock is not None else [0.0]

    def factory(config: dict[str, Any]) -> FakeProducer:
        producer = FakeProducer(config, clock, failure)
        producers.append(producer)
        return producer

    replayer = Replayer(
        settings,
        producer_factory=factory,  # type: ignore[arg-type]
        monotonic=lambda: clock[0],
        wall_clock=lambda: NOW,
        show_progress=False,
    )
    return replayer, producers


def test_replayer_producer_is_idempotent_and_reports_only_errors(
    settings: Settings,
) -> None:
    _, (producer,) = _replayer(settings)

    assert producer.config["enable.idempotence"] is True
    assert producer.config["acks"] == "all"
    assert producer.config["delivery.report.only.error"] is True
    assert producer.config["linger.ms"] == settings.linger_ms


def test_close_releases_producer(settings: Settings) -> None:
    replayer, (producer,) = _replayer(settings)

    replayer.close()

    assert producer.is_closed


def test_replay_events_publishes_each_keyed_by_user(
    settings: Settings, make_event: Callable[..., Event]
) -> None:
    replayer, (producer,) = _replayer(settings)
    events = [
        make_event(user_id="u1"),
        make_event(user_id="u2", event_type=EventType.PURCHASE, price=3.5),
        make_event(user_id="u1", event_type=EventType.CART_ADD),
    ]

    summary = replayer.replay_events(events, source="dataset:test")

    assert producer.on_topic("ev") == [
        (event.user_id.encode(), raw)
        for event, raw in zip(events, serialize_events(events), strict=True)
    ]
    assert summary.events_by_type == {"click": 1, "purchase": 1, "cart_add": 1}
    assert summary.messages_rejected == 0


def test_serialized_events_leave_out_nulls(make_event: Callable[..., Event]) -> None:
    (raw,) = serialize_events([make_event()])

    assert "price" not in json.loads(raw)
    assert json.loads(raw)["event_time"] == "2019-10-01T00:00:00Z"


def test_replay_events_stops_at_limit(
    settings: Settings, make_event: Callable[..., Event]
) -> None:
    replayer, (producer,) = _replayer(settings)

    summary = replayer.replay_events(
        [make_event() for _ in range(5)], source="dataset:test", limit=2
    )

    assert summary.events_published == 2
    assert len(producer.on_topic("ev")) == 2


def test_replay_events_dead_letters_event_from_future(
    settings: Settings, make_event: Callable[..., Event]
) -> None:
    replayer, (producer,) = _replayer(settings)
    future = make_event(event_time=NOW + timedelta(days=2))

    summary = replayer.replay_events([make_event(), future], source="dataset:test")

    assert summary.rejected_by_reason == {"time_in_future": 1}
    ((key, value),) = producer.on_topic("dlq")
    letter = DeadLetter.model_validate_json(value or b"")
    assert letter.source_topic == "dataset:test"
    assert letter.source_offset == 1
    assert (
        base64.b64decode(letter.raw_value_base64 or "") == serialize_events([future])[0]
    )


def test_time_scale_divides_event_time_gaps(
    settings: Settings, make_event: Callable[..., Event]
) -> None:
    clock = [100.0]
    replayer, _ = _replayer(settings, clock)
    start = datetime(2019, 10, 1, tzinfo=UTC)
    events = [
        make_event(event_time=start),
        make_event(event_time=start + timedelta(minutes=1)),
        make_event(event_time=start + timedelta(minutes=3)),
    ]

    summary = replayer.replay_events(events, source="dataset:test", time_scale=60.0)

    assert clock[0] == pytest.approx(103.0)
    assert summary.events_published == 3


@pytest.mark.parametrize("time_scale", [0.0, -5.0, math.nan, math.inf])
def test_time_scale_must_be_positive(
    time_scale: float, settings: Settings, make_event: Callable[..., Event]
) -> None:
    replayer, _ = _replayer(settings)

    with pytest.raises(ValueError, match="time_scale"):
        replayer.replay_events(
            [make_event()], source="dataset:test", time_scale=time_scale
        )


def test_replay_file_routes_bad_lines_to_dead_letters(
    settings: Settings, tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    replayer, (producer,) = _replayer(settings)
    good = serialize_events([make_event(user_id="u7")])[0]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(good + b"\n{broken\n[]\n" + good + b"\r\n")

    summary = replayer.replay_file(path)

    assert producer.on_topic("ev") == [(b"u7", good), (b"u7", good)]
    assert summary.rejected_by_reason == {"invalid_json": 1, "not_an_object": 1}
    letters = _dead_letters(producer)
    assert [letter.source_offset for letter in letters] == [2, 3]
    assert {letter.source_topic for letter in letters} == {"file:mixed.jsonl"}
    assert base64.b64decode(letters[0].raw_value_base64 or "") == b"{broken"


def _dead_letters(producer: FakeProducer) -> list[DeadLetter]:
    return [
        DeadLetter.model_validate_json(v or b"") for _, v in producer.on_topic("dlq")
    ]


def test_replay_file_skips_blank_lines_keeping_line_numbers(
    settings: Settings, tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    replayer, (producer,) = _replayer(settings)
    good = serialize_events([make_event(user_id="u7")])[0]
    path = tmp_path / "spaced.jsonl"
    path.write_bytes(b"\n" + good + b"\n\n  \t\r\n{broken\n" + good + b"\n\n")

    summary = replayer.replay_file(path)

    assert producer.on_topic("ev") == [(b"u7", good), (b"u7", good)]
    assert [letter.source_offset for letter in _dead_letters(producer)] == [5]
    assert summary.rejected_by_reason == {"invalid_json": 1}
    assert summary.blank_lines == 4


def test_replay_file_leaves_blank_lines_out_of_limit(
    settings: Settings, tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    replayer, (producer,) = _replayer(settings)
    good = serialize_events([make_event(user_id="u7")])[0]
    path = tmp_path / "spaced.jsonl"
    path.write_bytes(b"\n\n" + good + b"\n" + good + b"\n")

    summary = replayer.replay_file(path, limit=1)

    assert producer.on_topic("ev") == [(b"u7", good)]
    assert summary.events_published == 1


def test_replay_file_publishes_first_line_behind_byte_order_mark(
    settings: Settings, tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    replayer, (producer,) = _replayer(settings)
    good = serialize_events([make_event(user_id="u7")])[0]
    path = tmp_path / "windows.jsonl"
    path.write_bytes(codecs.BOM_UTF8 + good + b"\r\n")

    summary = replayer.replay_file(path)

    assert producer.on_topic("ev") == [(b"u7", good)]
    assert producer.on_topic("dlq") == []
    assert summary.events_published == 1


def test_replay_file_dead_letters_byte_order_mark_after_start(
    settings: Settings, tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    replayer, (producer,) = _replayer(settings)
    good = serialize_events([make_event(user_id="u7")])[0]
    path = tmp_path / "joined.jsonl"
    path.write_bytes(good + b"\n" + codecs.BOM_UTF8 + good + b"\n")

    summary = replayer.replay_file(path)

    (letter,) = _dead_letters(producer)
    assert producer.on_topic("ev") == [(b"u7", good)]
    assert summary.rejected_by_reason == {"invalid_json": 1}
    assert letter.source_offset == 2
    assert "starts with a UTF-8 byte order mark" in letter.message


def test_replay_file_reads_gzipped_lines(
    settings: Settings, tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    replayer, (producer,) = _replayer(settings)
    good = serialize_events([make_event(user_id="u7")])[0]
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(gzip.compress(good + b"\n" + good + b"\n"))

    summary = replayer.replay_file(path, limit=1)

    assert summary.events_published == 1
    assert producer.on_topic("ev") == [(b"u7", good)]


@pytest.mark.parametrize(
    ("name", "make_content", "expected"),
    [
        (
            "truncated.jsonl.gz",
            lambda lines: gzip.compress(lines)[:-12],
            (
                "cannot be read after line 1: the gzip data is truncated (",
                "the lines up to it were published",
            ),
        ),
        (
            "plain.jsonl.gz",
            lambda lines: lines,
            (
                "cannot be read: the name ends in .gz but the file is not "
                "gzip-compressed (",
                "nothing was published",
            ),
        ),
    ],
    ids=["truncated", "not-gzip"],
)
def test_unreadable_replay_file_names_path(
    settings: Settings,
    tmp_path: Path,
    make_event: Callable[..., Event],
    name: str,
    make_content: Callable[[bytes], bytes],
    expected: tuple[str, str],
) -> None:
    replayer, (producer,) = _replayer(settings)
    good = serialize_events([make_event(user_id="u7")])[0]
    path = tmp_path / name
    path.write_bytes(make_content(good + b"\n" + good + b"\n"))

    with pytest.raises(ReplayFileError) as caught:
        replayer.replay_file(path)

    message = str(caught.value)
    assert repr(str(path)) in message
    for part in expected:
        assert part in message
    assert len(message.splitlines()) == 1
    assert producer.flushes >= 1


@pytest.mark.parametrize("stage", ["publish", "final flush"])
def test_interrupted_replay_logs_progress(
    settings: Settings,
    make_event: Callable[..., Event],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    stage: str,
) -> None:
    replayer, (producer,) = _replayer(settings)
    record, flush = producer.produce, producer.flush

    def produce_then_interrupt(topic: str, value: bytes, key: bytes) -> None:
        if producer.on_topic("ev"):
            raise KeyboardInterrupt
        record(topic, value, key)

    def interrupt_first_flush(timeout: float = 0.0) -> int:
        if not producer.flushes:
            producer.flushes += 1
            raise KeyboardInterrupt
        return flush(timeout)

    if stage == "publish":
        monkeypatch.setattr(producer, "produce", produce_then_interrupt)
    else:
        monkeypatch.setattr(producer, "flush", interrupt_first_flush)
    # The publish stage is interrupted at the second event.
    count = 2 if stage == "publish" else 1
    events = [make_event(user_id=f"u{number}") for number in range(count)]

    with pytest.raises(KeyboardInterrupt):
        replayer.replay_events(events, source="test")

    # The interrupt's own flush delivers what is queued before the report.
    assert producer.flushes == (1 if stage == "publish" else 2)
    assert len(producer.on_topic("ev")) == 1
    assert "replay interrupted source=test published=1" in caplog.text


class _Message:
    def topic(self) -> str:
        return "ev"


def test_purged_messages_are_not_failures(caplog: pytest.LogCaptureFixture) -> None:
    failures = _DeliveryFailures()
    timed_out = KafkaError(KafkaError._MSG_TIMED_OUT)

    failures(KafkaError(KafkaError._PURGE_QUEUE), _Message())  # type: ignore[arg-type]
    failures(timed_out, _Message())  # type: ignore[arg-type]

    assert failures.take() == [str(timed_out)]
    assert caplog.text.count("delivery failed topic=ev") == 1


def test_replay_events_logs_its_limit(
    settings: Settings,
    make_event: Callable[..., Event],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="services.replay.replayer")
    replayer, (producer,) = _replayer(settings)
    events = [make_event(user_id="u7"), make_event(user_id="u8")]

    summary = replayer.replay_events(events, source="dataset:test", limit=1)

    assert summary.events_published == 1
    assert len(producer.on_topic("ev")) == 1
    assert "limit=1" in caplog.text


def test_delivery_failure_raises_with_broker_address(
    settings: Settings, make_event: Callable[..., Event]
) -> None:
    replayer, _ = _replayer(settings, failure="Broker: Unknown topic")

    with pytest.raises(ReplayDeliveryError, match="127.0.0.1:9"):
        replayer.replay_events([make_event()], source="dataset:test")


def test_publish_catalog_keys_by_entity(settings: Settings) -> None:
    replayer, (producer,) = _replayer(settings)
    item = ItemRecord(item_id="i1", brand="acme", updated_at=NOW)
    review = ReviewRecord(
        review_id="r1", item_id="i1", rating=5, created_at=NOW, updated_at=NOW
    )

    counts = replayer.publish_catalog([item, review])

    assert counts == {"item": 1, "review": 1}
    keys = [key for key, _ in producer.on_topic("cat")]
    assert keys == [b"item:i1", b"review:r1"]
    assert ItemRecord.model_validate_json(producer.on_topic("cat")[0][1] or b"") == item


def test_summary_lines_report_rate(
    settings: Settings, make_event: Callable[..., Event]
) -> None:
    clock = [0.0]
    replayer, _ = _replayer(settings, clock)

    summary = replayer.replay_events([make_event()], source="dataset:test")
    summary.elapsed_seconds = 0.5

    assert summary.messages_per_second == pytest.approx(2.0)
    assert summary.lines()[2] == "events published: 1 (click 1)"
    assert "2 messages/s (published and rejected" in summary.lines()[-1]


def test_summary_lines_leave_out_blank_lines_for_dataset(
    settings: Settings, make_event: Callable[..., Event]
) -> None:
    replayer, _ = _replayer(settings)

    summary = replayer.replay_events([make_event()], source="dataset:test")

    assert summary.blank_lines is None
    assert not any(line.startswith("blank lines") for line in summary.lines())


def test_summary_lines_report_blank_lines_of_file(
    settings: Settings, tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    replayer, _ = _replayer(settings)
    path = tmp_path / "events.jsonl"
    path.write_bytes(serialize_events([make_event()])[0] + b"\n\n\n")

    summary = replayer.replay_file(path)

    assert summary.lines()[3:5] == ["rejected: 0 (none)", "blank lines skipped: 2"]
