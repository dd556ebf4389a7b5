"""The hot-path benchmark's slate clock, fed by hand instead of a broker."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from services.common.settings import KafkaSettings
from tests.slate_messages import MessageFeed, slate_document


@pytest.fixture
def feed(
    load_script: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch
) -> MessageFeed:
    return MessageFeed(monkeypatch, load_script("bench_hotpath"))


@pytest.fixture
def slate_clock(load_script: Callable[[str], ModuleType], feed: MessageFeed) -> Any:
    return load_script("bench_hotpath").SlateClock(KafkaSettings(), "slates.products")


def test_slate_clock_records_valid_slate(slate_clock: Any, feed: MessageFeed) -> None:
    feed.send(json.dumps(slate_document()).encode())

    slate_clock.wait_for(1, stall_seconds=0.0)

    assert slate_clock.arrivals == {"e1": 10.5}
    assert slate_clock.invalid == 0


def test_slate_clock_rejects_latency_as_text(
    slate_clock: Any, feed: MessageFeed
) -> None:
    document = slate_document(latency_ms="4.0")

    feed.send(json.dumps(document).encode())

    assert slate_clock.arrivals == {}
    assert slate_clock.invalid == 1
    with pytest.raises(RuntimeError, match="1 message.* not valid slates.*latency_ms"):
        slate_clock.wait_for(1)
