from __future__ import annotations

import json
import math

import pytest

from services.bench import reader as reader_module
from services.bench.reader import LatencyHistogram, SlateReader
from services.common.settings import KafkaSettings
from tests.slate_messages import MessageFeed, slate_document


def test_histogram_percentiles_within_one_percent() -> None:
    histogram = LatencyHistogram()
    for milliseconds in range(1, 1001):
        histogram.add(float(milliseconds))

    percentiles = histogram.percentiles()

    assert percentiles["p50"] == pytest.approx(500, rel=0.011)
    assert percentiles["p95"] == pytest.approx(950, rel=0.011)
    assert percentiles["p99"] == pytest.approx(990, rel=0.011)


def test_histogram_empty_gives_nan() -> None:
    assert math.isnan(LatencyHistogram().percentile(0.5))


def test_histogram_keeps_few_buckets() -> None:
    histogram = LatencyHistogram()
    for index in range(100_000):
        histogram.add(1.0 + index * 0.01)

    assert histogram.count == 100_000
    assert len(histogram.buckets) < 800


@pytest.fixture
def feed(monkeypatch: pytest.MonkeyPatch) -> MessageFeed:
    return MessageFeed(monkeypatch, reader_module)


@pytest.fixture
def reader(feed: MessageFeed) -> SlateReader:
    """A reader that waits for the slate of event ``bench-3``."""
    reader = SlateReader(KafkaSettings(), "recommendations.products", bytearray(1), 8)
    reader.mark_sent(3, at=10.0)
    return reader


def test_slate_reader_counts_valid_slate(
    reader: SlateReader, feed: MessageFeed
) -> None:
    document = slate_document(trigger_event_id="bench-3")

    feed.send(json.dumps(document).encode())

    assert reader.slates == 1
    assert reader.summary()["invalid_messages"] == 0


def test_slate_reader_skips_latency_as_text(
    reader: SlateReader, feed: MessageFeed
) -> None:
    document = slate_document(trigger_event_id="bench-3", latency_ms="4.0")

    feed.send(json.dumps(document).encode())

    assert reader.slates == 0
    assert reader.summary()["invalid_messages"] == 1
    assert reader.sent == {3: 10.0}
