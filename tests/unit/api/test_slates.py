"""Stored slates as the API serves them, with a stub Redis: no server is reached."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.features import FeatureKeys
from schemas.recommendations import Slate, SlateItem, Surface
from services.api import slates as slates_module
from services.api.metrics import INVALID_SLATES, INVALID_STOCKS
from services.api.slates import SlateLookup
from services.common.logging import RepeatFilter
from services.scorer.publisher import latest_slate_key

PREFIX = "cw"


class _StubRedis:
    """Holds strings and hashes, and returns them to ``get`` and pipelined ``hget``."""

    def __init__(self) -> None:
        self.strings: dict[str, bytes] = {}
        self.hashes: dict[str, dict[str, bytes]] = {}
        self._queued: list[bytes | None] = []

    def get(self, key: str) -> bytes | None:
        return self.strings.get(key)

    def pipeline(self, transaction: bool = True) -> _StubRedis:
        return self

    def hget(self, key: str, field: str) -> None:
        self._queued.append(self.hashes.get(key, {}).get(field))

    def execute(self) -> list[bytes | None]:
        queued, self._queued = self._queued, []
        return queued


def _store(
    redis_client: _StubRedis,
    key_user_id: str = "u1",
    key_surface: Surface = Surface.PRODUCTS,
    **overrides: Any,
) -> None:
    """Store a slate of items i1, i2 and i3 under the key of a user and surface."""
    values: dict[str, Any] = {
        "recommendation_id": "r1",
        "surface": key_surface,
        "user_id": key_user_id,
        "trigger_event_id": "e1",
        "items": [
            SlateItem(item_id=item_id, rank=rank, score=1.0 / rank, source="trending")
            for rank, item_id in enumerate(["i1", "i2", "i3"], start=1)
        ],
        "model_version": "heuristic-v1",
        "generated_at": datetime(2019, 10, 1, tzinfo=UTC),
        "latency_ms": 4.0,
    }
    values.update(overrides)
    key = latest_slate_key(PREFIX, key_user_id, key_surface)
    redis_client.strings[key] = Slate(**values).model_dump_json().encode()


def _set_stock(redis_client: _StubRedis, item_id: str, stock: bytes) -> None:
    redis_client.hashes[FeatureKeys(PREFIX).item_catalog(item_id)] = {"stock": stock}


def _stored(
    redis_client: _StubRedis,
    user_id: str = "u1",
    surface: Surface = Surface.PRODUCTS,
) -> Slate | None:
    lookup = SlateLookup(
        redis_client,  # type: ignore[arg-type]
        PREFIX,
        None,
        is_dropping_out_of_stock=True,
    )
    raw = asyncio.run(lookup.stored(user_id, surface))
    return None if raw is None else Slate.model_validate_json(raw)


@pytest.fixture
def fresh_repeat_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give the WARNING lines a repeat filter that no earlier test has fed."""
    repeat_filter = RepeatFilter(
        interval_seconds=10.0, clock=lambda: 0.0, varying=slates_module._VARYING
    )
    monkeypatch.setattr(slates_module._invalid_logger, "filters", [repeat_filter])


@pytest.mark.parametrize("stock", [b"abc", b"nan", b"-inf", b"\xff"])
def test_stored_slate_keeps_item_of_invalid_stock(stock: bytes) -> None:
    redis_client = _StubRedis()
    _store(redis_client)
    _set_stock(redis_client, "i1", stock)
    _set_stock(redis_client, "i2", b"0")
    _set_stock(redis_client, "i3", b"2")
    invalid = INVALID_STOCKS.labels("products")
    before = invalid._value.get()

    served = _stored(redis_client)

    assert served is not None
    assert [(item.item_id, item.rank) for item in served.items] == [
        ("i1", 1),
        ("i3", 2),
    ]
    assert invalid._value.get() == before + 1


@pytest.mark.usefixtures("fresh_repeat_filter")
def test_invalid_stocks_log_one_line_per_surface(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis_client = _StubRedis()
    for user_id in ("u1", "alice"):
        _store(redis_client, key_user_id=user_id)
    _set_stock(redis_client, "i1", b"abc")
    _set_stock(redis_client, "i3", b"abc")

    with caplog.at_level(logging.WARNING, logger=slates_module._invalid_logger.name):
        _stored(redis_client, "u1")
        _stored(redis_client, "alice")

    [line] = [r.getMessage() for r in caplog.records]
    assert "invalid catalog stock read as unknown user_id=u1" in line
    assert "surface=products items=2 first_item_id=i1;" in line


@pytest.mark.usefixtures("fresh_repeat_filter")
@pytest.mark.parametrize(
    ("overrides", "first_error"),
    [
        ({"user_id": "u2"}, "user_id: another user's slate is stored here"),
        (
            {"surface": Surface.BUNDLES, "context_item_id": "i9"},
            "surface: a slate of surface 'bundles' is stored here",
        ),
    ],
    ids=["user", "surface"],
)
def test_stored_slate_of_other_key_counts_as_none(
    caplog: pytest.LogCaptureFixture, overrides: dict[str, Any], first_error: str
) -> None:
    redis_client = _StubRedis()
    _store(redis_client, **overrides)
    invalid = INVALID_SLATES.labels("products")
    before = invalid._value.get()

    with caplog.at_level(logging.WARNING, logger=slates_module._invalid_logger.name):
        served = _stored(redis_client)

    assert served is None
    assert invalid._value.get() == before + 1
    assert "invalid stored slate skipped user_id=u1 surface=products" in caplog.text
    assert f"first_error={first_error}" in caplog.text
