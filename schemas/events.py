"""Shop events: what the site publishes on the ``events`` topic.

The JSON Schema in ``schemas/json/event.schema.json`` is the contract for
producers in any language. This module mirrors it, and the contract tests check
that both accept and reject the same documents.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

__all__ = [
    "EVENT_SCHEMA_VERSION",
    "ID_PATTERN",
    "MAX_ID_LENGTH",
    "TIME_PATTERN",
    "Event",
    "EventContext",
    "EventType",
]

EVENT_SCHEMA_VERSION: Literal[1] = 1

# Ids are opaque strings. The cap keeps Redis keys and slates small and stops a
# producer bug from turning every key into a multi-kilobyte string.
MAX_ID_LENGTH = 128

# Ids contain no control character (Unicode's Cc: C0, DEL and C1). Stored
# lists join ids with the unit separator (0x1F), and NUL or a line break
# (C1's NEL too) in an id shown on a site would be a producer's bug. Blank ids
# are left out too: at least one character must be neither a control
# character nor whitespace (Unicode's White_Space and the byte order mark).
# Python's re, pydantic's Rust engine and ECMA-262 all read \uXXXX escapes,
# so the JSON Schema has this pattern.
_NOT_CONTROL = r"[^\u0000-\u001f\u007f-\u009f]"
_NOT_BLANK = (
    r"[^\u0000-\u0020\u007f-\u009f\u00a0\u1680\u2000-\u200a\u2028\u2029"
    r"\u202f\u205f\u3000\ufeff]"
)
ID_PATTERN = rf"^{_NOT_CONTROL}*{_NOT_BLANK}{_NOT_CONTROL}*$"
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]

# RFC 3339's date-time grammar with the range of each field: month 01-12, day
# 01-31, hour 00-23, minute 00-59, second 00-60 (a leap second) and an offset
# of at most 23:59. pydantic alone also takes a space separator, missing
# seconds or Unix seconds in a string. The JSON Schema carries this exact
# pattern, as the format "date-time" is only checked by validators that opt
# in. Which days a month has is left to datetime, which rejects 2019-02-30.
TIME_PATTERN = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
    r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_RFC3339 = re.compile(TIME_PATTERN)


_LEAP_SECOND = re.compile(r"^(.{17})60(\.\d+)?")


def _parse_rfc3339(value: object) -> object:
    # Anything but a string is left to pydantic's own type check.
    if not isinstance(value, str):
        return value
    # fullmatch, because "$" alone also matches before a final line break.
    if not _RFC3339.fullmatch(value):
        raise ValueError("expected an RFC 3339 time with a UTC offset")
    # RFC 3339 allows a leap second (:60), which datetime cannot hold; the
    # last microsecond of the minute keeps the event's place in time order.
    text = _LEAP_SECOND.sub(r"\g<1>59.999999", value.upper())
    parsed = datetime.fromisoformat(text)
    try:
        # An offset can move a time at either end of datetime's range past it.
        parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            "expected an RFC 3339 time that lies between the years 1 and 9999 in UTC"
        ) from None
    return parsed


def _require_integer_one(value: object) -> object:
    # In JSON, true is not a number, but Python compares True == 1.
    if isinstance(value, bool):
        raise ValueError("expected the integer 1")
    return value


def _integral_float_to_int(value: object) -> object:
    # JSON Schema counts 1.0 as an integer; pydantic's strict mode does not.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


WireTime = Annotated[AwareDatetime, BeforeValidator(_parse_rfc3339)]
SchemaVersion = Annotated[Literal[1], BeforeValidator(_require_integer_one)]
WireInt = BeforeValidator(_integral_float_to_int)


class EventType(StrEnum):
    """Kind of interaction. The values double as the multi-task model's task names."""

    CLICK = "click"
    CART_ADD = "cart_add"
    PURCHASE = "purchase"


class EventContext(BaseModel):
    """Page, device and recommendation that the event happened on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    page: Annotated[str, Field(max_length=256)] | None = None
    device: Annotated[str, Field(max_length=64)] | None = None
    recommendation_id: Id | None = None


class Event(BaseModel):
    """One click, cart add or purchase of one item by one user."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: SchemaVersion = EVENT_SCHEMA_VERSION
    event_id: Id
    event_type: EventType
    user_id: Id
    item_id: Id
    event_time: WireTime
    session_id: Id | None = None
    quantity: Annotated[int, Field(ge=1, le=10_000), WireInt] | None = None
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
