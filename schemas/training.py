"""Training examples: point-in-time feature snapshots on ``training-examples``.

The hot path emits one example per applied event, with the user's and the
item's features as they were just *before* the event. Labels are not part of
the example: the trainer joins them from later events of the same user.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import EventType, Id, WireTime

__all__ = ["TRAINING_SCHEMA_VERSION", "TrainingExample"]

TRAINING_SCHEMA_VERSION: Literal[1] = 1


class TrainingExample(BaseModel):
    """Features of one (user, item) pair at the moment just before an event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = TRAINING_SCHEMA_VERSION
    event_id: Id
    event_type: EventType
    user_id: Id
    item_id: Id
    session_id: Id | None = None
    event_time: WireTime
    category_id: Id | None = None
    brand: str | None = None
    price: float | None = None
    user_features: dict[str, float] = Field(default_factory=dict)
    item_features: dict[str, float] = Field(default_factory=dict)
