from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from services.common.logging import (
    RepeatFilter,
    SecretMaskingFilter,
    configure_logging,
)

# What aiokafka logs on every failed reconnect while the broker is down.
AIOKAFKA_CONNECT = 'Unable connect to "%s:%s": %s'
CONNECT_ERROR = "[Errno 111] Connect call failed ('127.0.0.1', 19092)"


@pytest.fixture
def configure() -> Iterator[Callable[..., None]]:
    """Return configure_logging, undoing its changes to the root handler after."""
    root = logging.getLogger()
    root_level = root.level
    client_levels = {
        name: logging.getLogger(name).level
        for name in ("librdkafka", "aiokafka", "faust", "mode", "torch")
    }
    installed: list[logging.Handler] = []

    def configure_and_note(**options: Any) -> None:
        configure_logging(**options)
        installed.extend(root.handlers)

    yield configure_and_note

    for handler in installed:
        root.removeHandler(handler)
    root.setLevel(root_level)
    for name, level in client_levels.items():
        logging.getLogger(name).setLevel(level)


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


def test_repeat_filter_passes_records_of_other_loggers() -> None:
    repeats = RepeatFilter(
        interval_seconds=30.0, clock=lambda: 0.0, loggers=["aiokafka"]
    )

    passed = [
        repeats.filter(
            logging.LogRecord(name, logging.ERROR, "", 0, "broker down", (), None)
        )
        for name in ("services.feedback", "aiokafkax", "services.feedback")
    ]

    assert passed == [True] * 3


def test_repeat_filter_treats_object_addresses_as_one_kind() -> None:
    repeats = RepeatFilter(interval_seconds=30.0, clock=lambda: 0.0)
    line = "Unexpected error in sender routine <Sender object at %s>"

    first = repeats.filter(_record(line, "0x7f3a2c1d5e80"))
    second = repeats.filter(_record(line, "0x7f3a2c1d9b10"))

    assert (first, second) == (True, False)


def test_configure_logging_holds_back_repeated_aiokafka_lines(
    configure: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    configure(level="INFO", clock=lambda: 5.0)
    connection = logging.getLogger("aiokafka.conn")

    for _ in range(500):
        connection.error(AIOKAFKA_CONNECT, "127.0.0.1", 19092, CONNECT_ERROR)

    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert "aiokafka.conn: Unable connect to" in lines[0]


def test_configure_logging_reports_held_back_count(
    configure: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    now = [0.0]
    configure(level="INFO", clock=lambda: now[0])
    client = logging.getLogger("aiokafka")
    for _ in range(300):
        client.error(AIOKAFKA_CONNECT, "127.0.0.1", 19092, CONNECT_ERROR)
    now[0] = 31.0

    client.error(AIOKAFKA_CONNECT, "127.0.0.1", 19092, CONNECT_ERROR)

    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert lines[1].endswith("(299 similar line(s) held back in the last 31 s)")


def test_configure_logging_thins_faust_and_mode_lines(
    configure: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    configure(level="INFO", clock=lambda: 0.0)

    for name in ("faust.transport.drivers.aiokafka", "mode.services"):
        for _ in range(50):
            logging.getLogger(name).warning("[^--Consumer]: broker not available")

    assert len(capsys.readouterr().err.splitlines()) == 2


def test_configure_logging_passes_every_line_of_service_loggers(
    configure: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    configure(level="INFO", clock=lambda: 0.0)

    for _ in range(5):
        logging.getLogger("services.feedback.app").warning("redis failed, retrying")

    assert len(capsys.readouterr().err.splitlines()) == 5


def test_configure_logging_passes_every_aiokafka_line_at_debug(
    configure: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    configure(level="DEBUG", clock=lambda: 0.0)

    for _ in range(5):
        logging.getLogger("aiokafka.conn").error("connection lost")

    assert len(capsys.readouterr().err.splitlines()) == 5


def test_configure_logging_keeps_torch_info_out(
    configure: Callable[..., None],
) -> None:
    configure(level="INFO", clock=lambda: 0.0)
    fake_tensor = logging.getLogger("torch._subclasses.fake_tensor")

    assert not fake_tensor.isEnabledFor(logging.INFO)
    assert fake_tensor.isEnabledFor(logging.WARNING)


def test_configure_logging_leaves_torch_alone_at_debug(
    configure: Callable[..., None],
) -> None:
    torch_logger = logging.getLogger("torch")
    torch_logger.setLevel(logging.NOTSET)

    configure(level="DEBUG", clock=lambda: 0.0)

    assert torch_logger.level == logging.NOTSET
    assert logging.getLogger("torch._subclasses.fake_tensor").isEnabledFor(
        logging.DEBUG
    )
