from __future__ import annotations

import math

import pytest

from services.bench.reader import LatencyHistogram


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
