"""Compact, immutable copies of events, slates and catalog facts.

The evaluator keeps a whole replay in memory, so it copies only the fields it
scores on, with interned ids, instead of the validated pydantic messages.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime

from schemas.catalog import PromotionRecord
from schemas.events import Event, EventType
from schemas.recommendations import Slate, Surface

__all__ = [
    "EventRecord",
    "PromotionRule",
    "SlateRecord",
    "event_record",
    "promotion_rule",
    "slate_record",
]


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event as the evaluator and the baselines see it.

    Attributes:
        event_id: the event's unique id.
        event_type: click, cart_add or purchase.
        user_id: who acted.
        item_id: on what.
        timestamp: event time as Unix seconds.
        session_key: the event's ``session_id``, or a key derived from the
            user's inactivity gaps when the producer sent none.
    """

    event_id: str
    event_type: EventType
    user_id: str
    item_id: str
    timestamp: float
    session_key: str


@dataclass(frozen=True, slots=True)
class SlateRecord:
    """A published slate, reduced to what scoring needs.

    Attributes:
        recommendation_id: the slate's unique id.
        surface: where the slate is shown.
        user_id: whom it was for.
        trigger_event_id: the event that triggered it.
        item_ids: items in rank order, rank 1 first.
        promotion_ids: promotion of each entry (promotions surface), else None.
        model_version: the artifact that ranked it.
        generated_at: publication time as Unix seconds.
        latency_ms: event-to-slate latency the publisher measured.
    """

    recommendation_id: str
    surface: Surface
    user_id: str
    trigger_event_id: str
    item_ids: tuple[str, ...]
    promotion_ids: tuple[str | None, ...]
    model_version: str
    generated_at: float
    latency_ms: float


@dataclass(frozen=True, slots=True)
class PromotionRule:
    """Eligibility of a promotion: an item must match every non-empty list."""

    starts_at: float
    ends_at: float
    category_ids: frozenset[str]
    brands: frozenset[str]
    item_ids: frozenset[str]

    def is_eligible(
        self, item_id: str, category_id: str | None, brand: str | None, at: float
    ) -> bool:
        """Tell whether the item qualifies at Unix time ``at``."""
        if not self.starts_at <= at < self.ends_at:
            return False
        if self.item_ids and item_id not in self.item_ids:
            return False
        if self.category_ids and category_id not in self.category_ids:
            return False
        return not (self.brands and brand not in self.brands)


def event_record(event: Event) -> EventRecord:
    """Copy the scored fields of an event, with ids interned.

    The session key is the event's ``session_id``, or empty when it has none,
    for the evaluator to derive from inactivity gaps once events are sorted.
    """
    return EventRecord(
        event_id=event.event_id,
        event_type=event.event_type,
        user_id=sys.intern(event.user_id),
        item_id=sys.intern(event.item_id),
        timestamp=event.event_timestamp,
        session_key=sys.intern(event.session_id or ""),
    )


def slate_record(slate: Slate) -> SlateRecord:
    """Copy the scored fields of a slate, with ids interned."""
    return SlateRecord(
        recommendation_id=slate.recommendation_id,
        surface=slate.surface,
        user_id=sys.intern(slate.user_id),
        trigger_event_id=slate.trigger_event_id,
        item_ids=tuple(sys.intern(entry.item_id) for entry in slate.items),
        promotion_ids=tuple(entry.promotion_id for entry in slate.items),
        model_version=sys.intern(slate.model_version),
        generated_at=_timestamp(slate.generated_at),
        latency_ms=slate.latency_ms,
    )


def promotion_rule(record: PromotionRecord) -> PromotionRule:
    """Copy the eligibility rule and validity window of a promotion."""
    return PromotionRule(
        starts_at=_timestamp(record.starts_at),
        ends_at=_timestamp(record.ends_at),
        category_ids=frozenset(record.category_ids),
        brands=frozenset(record.brands),
        item_ids=frozenset(record.item_ids),
    )


def _timestamp(value: datetime) -> float:
    return value.timestamp()
