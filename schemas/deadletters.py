"""Dead letters: rejected input published on ``events.dlq`` with its reason."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import WireTime

__all__ = ["DEAD_LETTER_SCHEMA_VERSION", "DeadLetter", "RejectionReason"]

DEAD_LETTER_SCHEMA_VERSION: Literal[1] = 1


class RejectionReason(StrEnum):
    """Why an input was rejected; one code per kind of fault.

    ``empty_value``: no value (a tombstone) or zero bytes. ``invalid_json``:
    not UTF-8 JSON, or an object that repeats a key. ``not_an_object``: JSON,
    but not an object.
    ``unsupported_schema_version``: ``schema_version`` other than 1.
    ``missing_field`` / ``unknown_field``: a required field is absent, or a
    field is not in the schema. ``wrong_type``: a value of the wrong JSON type.
    ``unknown_event_type``: a string that is not click, cart_add or purchase.
    ``unknown_record_type``: a catalog ``record_type`` that is not item,
    promotion or review.
    ``invalid_id`` / ``id_too_long``: an empty id, one of whitespace only or
    one with a control character, or one over 128 characters; ``invalid_id``
    also covers a catalog key that does not name its record's kind and id.
    ``invalid_time``: not an RFC 3339 time with a UTC offset.
    ``time_in_future`` / ``time_too_old``: beyond the allowed clock skew, or
    before 2000. ``negative_value``: a negative number where the schema
    allows none, such as a quantity, price, stock or vote count.
    ``out_of_range``: any other value outside its bounds.
    ``payload_too_large``: a message value over the size limit.
    ``processing_failed``: a valid event on which a processing stage raised
    the same kind of error at every attempt; the message names the error.
    Its features may be applied already, so it is a record, not for replay.
    """

    EMPTY_VALUE = "empty_value"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    UNKNOWN_RECORD_TYPE = "unknown_record_type"
    INVALID_ID = "invalid_id"
    ID_TOO_LONG = "id_too_long"
    INVALID_TIME = "invalid_time"
    TIME_IN_FUTURE = "time_in_future"
    TIME_TOO_OLD = "time_too_old"
    NEGATIVE_VALUE = "negative_value"
    OUT_OF_RANGE = "out_of_range"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    PROCESSING_FAILED = "processing_failed"


class DeadLetter(BaseModel):
    """A rejected message, with everything needed to fix and replay it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = DEAD_LETTER_SCHEMA_VERSION
    reason: RejectionReason
    message: Annotated[str, Field(max_length=1024)]
    source_topic: str
    source_partition: Annotated[int, Field(ge=-1)]
    source_offset: Annotated[int, Field(ge=-1)]
    raw_key_base64: str | None = None
    raw_value_base64: str | None = None
    rejected_at: WireTime
    service: str
