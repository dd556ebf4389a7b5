"""Start-up checks against a Tansu broker that is stopped with SIGSTOP."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common import kafka
from services.common.errors import BrokerUnreachableError
from services.common.kafka import TopicSpec, verify_topics
from services.common.settings import KafkaSettings
from services.infra import LocalServer, find_free_port
from services.infra.processes import start_broker

pytestmark = pytest.mark.integration


@pytest.fixture
def frozen_broker(tmp_path: Path) -> Iterator[LocalServer]:
    """A broker of this test's own, stopped with SIGSTOP; resumed and stopped after."""
    server = start_broker(tmp_path / "broker", find_free_port())
    pid = server.pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        yield server
    finally:
        os.kill(pid, signal.SIGCONT)
        server.stop()


def test_verify_topics_frozen_broker_is_not_missing(
    frozen_broker: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kafka, "_ADMIN_TIMEOUT_SECONDS", 1.0)
    settings = KafkaSettings(bootstrap=frozen_broker.address)

    with pytest.raises(BrokerUnreachableError) as caught:
        verify_topics(settings, [TopicSpec("events", 6)])

    message = str(caught.value)
    assert message.startswith(f"no Kafka broker responded at {frozen_broker.address}")
    assert f"{frozen_broker.address} accepts connections but does not respond" in (
        message
    )
    assert "'cartwheel infra up'" not in message
