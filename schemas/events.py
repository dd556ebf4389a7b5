"""Shop events: what the site publishes on the ``events`` topic.

The JSON Schema in ``schemas/json/event.schema.json`` is the contract for
producers in any language; this module mirrors it, and the contract tests check
that both accept and reject the same documents.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "EVENT_SCHEMA_VERSION",
    "MAX_ID_LENGTH",
    "Event",
    "EventContext",
    "EventType",
]

EVENT_SCHEMA_VERSION = 1

# Ids are opaque strings. The cap keeps Redis keys and slates small and stops a
# producer bug from turning every key into a multi-kilobyte string.
MAX_ID_LENGTH = 128

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]


class EventType(StrEnum):
    """Kind of interaction. The values double as the multi-task model's task names."""

    CLICK = "click"
    CART_ADD = "cart_add"
    PURCHASE = "purchase"


class EventContext(BaseModel):
    """Where the event happened on the site."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    page: Annotated[str, Field(max_length=256)] | None = None
    device: Annotated[str, Field(max_length=64)] | None = None
    recommendation_id: Id | None = None


class Event(BaseModel):
    """One click, cart add or purchase of one item by one user."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = EVENT_SCHEMA_VERSION
    event_id: Id
    event_type: EventType
    user_id: Id
    item_id: Id
    event_time: AwareDatetime
    session_id: Id | None = None
    quantity: Annotated[int, Field(ge=1, le=10_000)] | None = None
    price: Annotated[float, Field(ge=0.0, le=1e9, allow_inf_nan=False)] | None = None
    order_id: Id | None = None
    context: EventContext | None = None

    @field_validator("event_time")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @property
    def event_timestamp(self) -> float:
        """Event time as Unix seconds."""
        return self.event_time.timestamp()
