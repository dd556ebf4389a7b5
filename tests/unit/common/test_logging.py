from __future__ import annotations

import logging
import re

import pytest

from services.common.logging import RepeatFilter, SecretMaskingFilter


def test_secret_masking_filter_hides_secret_in_arguments(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("cartwheel.test.masking")
    masking = SecretMaskingFilter(["hunter2"])
    logger.addFilter(masking)

    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("connecting url=%s", "redis://:hunter2@cache:6379/0")
    logger.removeFilter(masking)

    assert "hunter2" not in caplog.text
    assert "redis://:**********@cache:6379/0" in caplog.text


def test_secret_masking_filter_keeps_record_without_secret() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "n=%s", (3,), None)

    SecretMaskingFilter(["hunter2"]).filter(record)

    assert record.getMessage() == "n=3"
    assert record.args == (3,)


def _record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("librdkafka", logging.ERROR, "", 0, message, args, None)


def test_repeat_filter_suppresses_duration_variants() -> None:
    now = [0.0]
    repeats = RepeatFilter(interval_seconds=30.0, clock=lambda: now[0])
    connect = "%s [%s] 127.0.0.1:%d/bootstrap: Connect failed (after %dms)"

    first = repeats.filter(_record(connect, "FAIL", "rdkafka#producer-1", 19092, 0))
    now[0] = 0.05
    second = repeats.filter(_record(connect, "FAIL", "rdkafka#producer-1", 19092, 1))
    other = repeats.filter(_record("%s [%s] all brokers down", "ALLBROKERSDOWN", "x"))
    now[0] = 31.0
    later = _record(connect, "FAIL", "rdkafka#producer-1", 19092, 0)
    third = repeats.filter(later)

    assert (first, second, other, third) == (True, False, True, True)
    assert later.getMessage().endswith("(1 similar line(s) held back in the last 31 s)")


def test_repeat_filter_keeps_unrepeated_message() -> None:
    now = [0.0]
    repeats = RepeatFilter(interval_seconds=30.0, clock=lambda: now[0])
    repeats.filter(_record("broker %d down", 1))
    now[0] = 40.0
    record = _record("broker %d down", 2)

    assert repeats.filter(record)
    assert record.getMessage() == "broker 2 down"


def test_repeat_filter_passes_lines_about_other_brokers() -> None:
    repeats = RepeatFilter(interval_seconds=30.0, clock=lambda: 0.0)
    connect = "%s [%s] %s: Connect failed (after 0ms in state CONNECT)"

    first = repeats.filter(
        _record(connect, "FAIL", "rdkafka#producer-1", "kafka-1:9092")
    )
    second = repeats.filter(
        _record(connect, "FAIL", "rdkafka#producer-1", "kafka-2:9092")
    )

    assert (first, second) == (True, True)


def test_repeat_filter_uses_given_varying_parts() -> None:
    now = [0.0]
    repeats = RepeatFilter(
        interval_seconds=10.0, clock=lambda: now[0], varying=re.compile(r"\d+")
    )
    line = "message dead-lettered reason=%s partition=%d offset=%d"

    first = repeats.filter(_record(line, "invalid_json", 0, 1))
    suppressed = [repeats.filter(_record(line, "invalid_json", 1, n)) for n in range(5)]
    other_reason = repeats.filter(_record(line, "missing_field", 0, 9))
    now[0] = 11.0
    later = _record(line, "invalid_json", 2, 99)
    after_interval = repeats.filter(later)

    assert first
    assert suppressed == [False] * 5
    assert other_reason
    assert after_interval
    assert later.getMessage().endswith("(5 similar line(s) held back in the last 11 s)")
