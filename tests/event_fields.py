"""The JSON fields of one valid click, as site code passes them to EventProducer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["CLICK_FIELDS"]

CLICK_FIELDS: dict[str, Any] = {
    "event_id": "e-1",
    "event_type": "click",
    "user_id": "u-1",
    "item_id": "i-1",
    "event_time": datetime(2019, 10, 1, tzinfo=UTC),
}
