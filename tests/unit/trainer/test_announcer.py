"""The model announcer's librdkafka log lines, with no broker listening."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.trainer.announcer import ModelAnnouncer
from tests.librdkafka_logs import (
    RAW_LIBRDKAFKA_LINE,
    poll_until_producer_logs,
    unreachable_kafka,
)


@pytest.fixture
def announcer() -> Iterator[ModelAnnouncer]:
    announcer = ModelAnnouncer(unreachable_kafka(), "models")
    yield announcer
    announcer.close()


def test_announcer_poll_logs_librdkafka_lines(
    announcer: ModelAnnouncer,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    records = poll_until_producer_logs(lambda: announcer.poll(0.1), caplog)

    assert records
    assert RAW_LIBRDKAFKA_LINE.search(capfd.readouterr().err) is None
