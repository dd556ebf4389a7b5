"""Slate messages for readers tested without a broker.

:func:`slate_document` gives a valid slate as JSON types, for a test to spoil
one field of. :class:`MessageFeed` takes the place of the bench's consumer
thread, so that a test hands its reader each message value itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from schemas.recommendations import Slate, Surface

__all__ = ["MessageFeed", "slate_document"]


def slate_document(**overrides: Any) -> dict[str, Any]:
    """Return a valid products slate without items, as a JSON object."""
    slate = Slate(
        recommendation_id="r1",
        surface=Surface.PRODUCTS,
        user_id="u1",
        trigger_event_id="e1",
        items=[],
        model_version="heuristic-v1",
        generated_at=datetime(2019, 10, 1, tzinfo=UTC),
        latency_ms=4.0,
    )
    return {**slate.model_dump(mode="json"), **overrides}


class MessageFeed:
    """A stand-in for ``MessageThread`` in ``module``, for the rest of the test.

    Args:
        monkeypatch: undoes the replacement when the test ends.
        module: the module whose readers start a ``MessageThread``.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> None:
        self._handles: list[Callable[[bytes, float], None]] = []
        monkeypatch.setattr(module, "MessageThread", self._start)

    def send(self, value: bytes, at: float = 10.5) -> None:
        """Hand ``value`` to the latest reader, as read at monotonic time ``at``."""
        self._handles[-1](value, at)

    def _start(self, kafka: object, topic: str, handle: Any) -> Any:
        self._handles.append(handle)
        return SimpleNamespace(close=lambda: None)
