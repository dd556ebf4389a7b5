"""The model announcer's librdkafka log lines, with no broker listening."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator

import pytest

from services.common.settings import KafkaSettings
from services.infra import find_free_port
from services.trainer.announcer import ModelAnnouncer

# librdkafka's own stderr format: "%<syslog level>|<time>|<facility>|<client>| ..."
RAW_LIBRDKAFKA_LINE = re.compile(r"^%\d\|", re.MULTILINE)


@pytest.fixture
def announcer() -> Iterator[ModelAnnouncer]:
    # Nothing listens on the port, so librdkafka logs failed connections.
    kafka = KafkaSettings(bootstrap=f"127.0.0.1:{find_free_port()}")
    announcer = ModelAnnouncer(kafka, "models")
    yield announcer
    announcer.close()


def _producer_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "librdkafka" and "rdkafka#producer" in record.getMessage()
    ]


def test_announcer_poll_logs_librdkafka_lines(
    announcer: ModelAnnouncer,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG, logger="librdkafka")

    deadline = time.monotonic() + 10.0
    while not _producer_records(caplog) and time.monotonic() < deadline:
        announcer.poll(0.1)

    assert _producer_records(caplog)
    assert RAW_LIBRDKAFKA_LINE.search(capfd.readouterr().err) is None
