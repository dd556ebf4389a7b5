"""Helpers for tests that librdkafka's lines go through Python logging.

librdkafka writes its own lines straight to stderr unless the client has a
logger and is polled. These helpers poll a client whose broker address has
no listener, so that librdkafka logs failed connections.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

import pytest

from services.common.settings import KafkaSettings
from services.infra import find_free_port

__all__ = ["RAW_LIBRDKAFKA_LINE", "poll_until_producer_logs", "unreachable_kafka"]

# librdkafka's own stderr format: "%<syslog level>|<time>|<facility>|<client>| ..."
RAW_LIBRDKAFKA_LINE = re.compile(r"^%\d\|", re.MULTILINE)


def unreachable_kafka() -> KafkaSettings:
    """Return Kafka settings for a free loopback port where nothing listens."""
    return KafkaSettings(bootstrap=f"127.0.0.1:{find_free_port()}")


def poll_until_producer_logs(
    poll: Callable[[], object],
    caplog: pytest.LogCaptureFixture,
    timeout_seconds: float = 10.0,
) -> list[logging.LogRecord]:
    """Call ``poll`` until a producer's line reaches the ``librdkafka`` logger.

    Returns:
        The producer's records, empty when none arrived within the timeout.
    """
    caplog.set_level(logging.DEBUG, logger="librdkafka")
    deadline = time.monotonic() + timeout_seconds
    records = _producer_records(caplog)
    while not records and time.monotonic() < deadline:
        poll()
        records = _producer_records(caplog)
    return records


def _producer_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "librdkafka" and "rdkafka#producer" in record.getMessage()
    ]
