"""Replays against the real broker: every event once, bad lines dead-lettered."""

from __future__ import annotations

import codecs
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from schemas.deadletters import DeadLetter
from services.common.kafka import consumer_config
from services.common.settings import KafkaSettings, TopicSettings
from services.replay.cli import replay_dataset, replay_file
from services.replay.datasets import REES46_SAMPLE, rees46
from services.replay.settings import Settings

pytestmark = pytest.mark.integration

PARTITIONS = 3


@pytest.fixture
def settings(kafka_settings: KafkaSettings, make_topic: Callable[..., str]) -> Settings:
    topics = TopicSettings(
        events=make_topic("events", PARTITIONS),
        dead_letters=make_topic("events.dlq", PARTITIONS),
        catalog=make_topic("catalog", PARTITIONS, is_compacted=True),
        partitions=PARTITIONS,
    )
    return Settings(kafka=kafka_settings, topics=topics)


def read_all(
    kafka: KafkaSettings,
    topic: str,
    expected: int,
    group: str,
    *,
    timeout_seconds: float = 30.0,
    settle_seconds: float = 1.0,
) -> list[tuple[bytes | None, bytes]]:
    """Read a topic from the start until ``expected`` messages arrived.

    It keeps reading for ``settle_seconds`` afterwards, so that a duplicate
    shows up as an extra message instead of going unnoticed.
    """
    consumer = Consumer(consumer_config(kafka, group, fetch_wait_ms=50))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    messages: list[tuple[bytes | None, bytes]] = []
    deadline = time.monotonic() + timeout_seconds
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            if settle_until is not None and time.monotonic() > settle_until:
                break
            for message in consumer.consume(num_messages=10_000, timeout=0.2):
                assert message.error() is None, message.error()
                messages.append((message.key(), message.value() or b""))
            if settle_until is None and len(messages) >= expected:
                settle_until = time.monotonic() + settle_seconds
    finally:
        consumer.close()
    return messages


def test_replay_sample_publishes_every_event_once(
    settings: Settings, unique_name: Callable[[str], str]
) -> None:
    expected = rees46.load(REES46_SAMPLE)

    adapter_summary, summary = replay_dataset(settings, "rees46", show_progress=False)

    messages = read_all(
        settings.kafka,
        settings.topics.events,
        expected.summary.events,
        unique_name("g"),
    )
    ids = Counter(json.loads(value)["event_id"] for _, value in messages)
    assert adapter_summary.events == expected.summary.events == 11_562
    assert summary.events_published == expected.summary.events
    assert len(messages) == expected.summary.events
    assert set(ids) == {event.event_id for event in expected.events}
    assert max(ids.values()) == 1
    assert all(key == json.loads(value)["user_id"].encode() for key, value in messages)


def test_replay_sample_publishes_catalog(
    settings: Settings, unique_name: Callable[[str], str]
) -> None:
    _, summary = replay_dataset(settings, "rees46", show_progress=False, limit=10)

    total = sum(summary.catalog_by_type.values())
    messages = read_all(
        settings.kafka, settings.topics.catalog, total, unique_name("g")
    )
    kinds = Counter(json.loads(value)["record_type"] for _, value in messages)
    assert kinds == summary.catalog_by_type
    assert kinds["promotion"] > 0
    assert kinds["review"] > 0
    assert summary.events_published == 10


def _line(**overrides: object) -> bytes:
    document: dict[str, object] = {
        "event_id": "ok-1",
        "event_type": "click",
        "user_id": "u1",
        "item_id": "i1",
        "event_time": "2019-10-01T00:00:00Z",
    }
    document.update(overrides)
    return json.dumps({k: v for k, v in document.items() if v is not None}).encode()


def test_replay_file_dead_letters_each_bad_line(
    settings: Settings, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    future = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    lines = [
        (_line(event_id="ok-1"), None),
        (b'{"event_id": "broken",', "invalid_json"),
        (_line(event_id="bad-type", event_type="wishlist"), "unknown_event_type"),
        (_line(event_id="no-user", user_id=None), "missing_field"),
        (_line(event_id="empty-item", item_id=""), "invalid_id"),
        (_line(event_id="ok-2", user_id="u2"), None),
        (_line(event_id="future", event_time=future), "time_in_future"),
        (
            _line(event_id="negative", event_type="purchase", price=-5.0),
            "negative_value",
        ),
        (_line(event_id="huge", context={"page": "x" * 20_000}), "payload_too_large"),
        (_line(event_id="ok-3", event_type="cart_add", quantity=2), None),
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(line for line, _ in lines) + b"\n")
    bad = {n: reason for n, (_, reason) in enumerate(lines, start=1) if reason}

    summary = replay_file(settings, path, show_progress=False)

    events = read_all(settings.kafka, settings.topics.events, 3, unique_name("g"))
    letters = [
        DeadLetter.model_validate_json(value)
        for _, value in read_all(
            settings.kafka, settings.topics.dead_letters, len(bad), unique_name("g")
        )
    ]
    assert sorted(json.loads(value)["event_id"] for _, value in events) == [
        "ok-1",
        "ok-2",
        "ok-3",
    ]
    assert {letter.source_offset: letter.reason.value for letter in letters} == bad
    assert len(letters) == len(bad)
    assert all(letter.source_topic == "file:mixed.jsonl" for letter in letters)
    assert summary.events_published == 3
    assert summary.rejected_by_reason == Counter(bad.values())


def test_replay_file_skips_blank_lines_and_leading_byte_order_mark(
    settings: Settings, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    path = tmp_path / "windows.jsonl"
    path.write_bytes(
        b"\r\n".join(
            [
                codecs.BOM_UTF8 + _line(event_id="ok-1"),
                b"",
                b"  \t",
                codecs.BOM_UTF8 + _line(event_id="bom-inside"),
                _line(event_id="ok-2", user_id="u2"),
                b"",
            ]
        )
        + b"\r\n"
    )

    summary = replay_file(settings, path, show_progress=False)

    events = read_all(settings.kafka, settings.topics.events, 2, unique_name("g"))
    letters = [
        DeadLetter.model_validate_json(value)
        for _, value in read_all(
            settings.kafka, settings.topics.dead_letters, 1, unique_name("g")
        )
    ]
    assert sorted(json.loads(value)["event_id"] for _, value in events) == [
        "ok-1",
        "ok-2",
    ]
    assert [(letter.source_offset, letter.reason.value) for letter in letters] == [
        (4, "invalid_json")
    ]
    assert summary.blank_lines == 3


def _run_replay(
    settings: Settings, *arguments: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m services.replay`` against the test broker and topics."""
    topics = settings.topics
    environment = {
        **os.environ,
        "CARTWHEEL_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
        "CARTWHEEL_TOPIC_EVENTS": topics.events,
        "CARTWHEEL_TOPIC_DEAD_LETTERS": topics.dead_letters,
        "CARTWHEEL_TOPIC_CATALOG": topics.catalog,
        "CARTWHEEL_TOPIC_PARTITIONS": str(PARTITIONS),
    }
    return subprocess.run(
        [sys.executable, "-m", "services.replay", *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_replay_command_reads_settings_from_environment(
    settings: Settings, unique_name: Callable[[str], str]
) -> None:
    result = _run_replay(settings, "rees46", "--limit", "500")

    assert result.returncode == 0, result.stderr
    assert "events published: 500 (" in result.stdout
    messages = read_all(settings.kafka, settings.topics.events, 500, unique_name("g"))
    assert len(messages) == 500


def test_replay_command_fails_without_valid_line(
    settings: Settings, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("user_id,item_id,event_time\nu1,i1,2019-10-01\nu2,i2,2019-10-02\n")

    result = _run_replay(settings, "--file", str(path), "--no-progress")

    letters = read_all(
        settings.kafka, settings.topics.dead_letters, 3, unique_name("g")
    )
    assert result.returncode == 1
    assert "events published: 0 (none)" in result.stdout
    assert "rejected: 3 (invalid_json 3)" in result.stdout
    assert result.stderr.splitlines()[-1].startswith(
        f"services.replay: error: none of the 3 line(s) read from replay file "
        f"{str(path)!r} is a valid event"
    )
    assert len(letters) == 3


def test_replay_command_rejects_binary_file(
    settings: Settings, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(Path(sys.executable).read_bytes())

    result = _run_replay(settings, "--file", str(path), "--no-progress")

    letters = read_all(
        settings.kafka, settings.topics.dead_letters, 0, unique_name("g")
    )
    events = read_all(settings.kafka, settings.topics.events, 0, unique_name("g"))
    assert result.returncode == 1
    assert result.stdout == ""
    # The offset of the first NUL byte depends on the executable's format.
    (error,) = result.stderr.splitlines()
    assert error.startswith(
        f"services.replay: error: replay file {str(path)!r} is not text: NUL byte "
        "at offset "
    )
    assert error.endswith(
        "; expected JSON lines (UTF-8 text, one JSON event per line), "
        "gzip-compressed only under a name ending in .gz"
    )
    assert letters == []
    assert events == []
