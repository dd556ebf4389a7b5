"""Types of the feature store: its tuning and the outcome of applying an event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from schemas.events import Event, EventType
from schemas.features import (
    ItemAttributes,
)

__all__ = [
    "AppliedResult",
    "EventPosition",
    "EventStatus",
    "FeatureStoreConfig",
]


class EventStatus(StrEnum):
    """Outcome of applying one event."""

    APPLIED = "applied"
    LATE = "late"
    """Applied; older than the user's newest event but inside every window."""
    STALE = "stale"
    """Older than the longest window: skipped for windowed features only."""
    REDELIVERED = "redelivered"
    """Already applied from this partition and offset: a replay after a crash."""
    DUPLICATE = "duplicate"
    """Already applied from another offset: a producer duplicate, dropped."""

    @property
    def is_new(self) -> bool:
        return self in (EventStatus.APPLIED, EventStatus.LATE, EventStatus.STALE)


_STATUS_CODES = (
    EventStatus.APPLIED,
    EventStatus.LATE,
    EventStatus.STALE,
    EventStatus.REDELIVERED,
    EventStatus.DUPLICATE,
)


@dataclass(frozen=True)
class EventPosition:
    """Partition and offset of an event, which distinguish a replay from a duplicate."""

    partition: int
    offset: int


@dataclass(frozen=True)
class FeatureStoreConfig:
    """Tuning of the feature store; the defaults suit a shop with daily visitors.

    Attributes:
        user_ttl_seconds: a user's state expires this long after their last event.
        item_ttl_seconds: an item's counts and lists expire this long after
            its last event.
        catalog_ttl_seconds: catalog records expire this long after their last
            update or the item's last event.
        session_idle_seconds: gap that starts a new session.
        affinity_tau_seconds: decay time constant of category and brand affinity.
        trend_tau_seconds: decay time constant of trending scores.
        pair_tau_seconds: decay time constant of item-to-item scores.
        dedupe_size: event ids remembered per user (the dedupe horizon).
            LIMITATION(L-23): a repeat older than the user's last
            ``dedupe_size`` events is applied again.
        max_recent_items: recent and purchased items kept per user.
        max_partners: same-session items each event pairs with.
        max_affinity: categories and brands kept per user.
        max_trending: items kept in the shop-wide trending list.
        max_trending_category: items kept per category trending list.
        max_pairs: items kept per item-to-item list.
        prior_strength: weight of the shop-wide rate in smoothed item rates.
        weights: event weight in affinities and trending, per event type.
        anchor: Unix seconds that decayed log-scores are relative to.
    """

    user_ttl_seconds: int = 9 * 86_400
    item_ttl_seconds: int = 14 * 86_400
    catalog_ttl_seconds: int = 30 * 86_400
    session_idle_seconds: float = 30 * 60
    affinity_tau_seconds: float = 3 * 86_400
    trend_tau_seconds: float = 86_400
    pair_tau_seconds: float = 7 * 86_400
    dedupe_size: int = 64
    max_recent_items: int = 50
    max_partners: int = 5
    max_affinity: int = 5
    max_trending: int = 1000
    max_trending_category: int = 200
    max_pairs: int = 50
    prior_strength: float = 20.0
    weights: Mapping[EventType, float] = field(
        default_factory=lambda: {
            EventType.CLICK: 1.0,
            EventType.CART_ADD: 3.0,
            EventType.PURCHASE: 5.0,
        }
    )
    anchor: float = 946_684_800.0


@dataclass(frozen=True)
class AppliedResult:
    """The outcome of applying one event, with features from just before it.

    For a new event the features are those just before it. For a redelivered
    event they are the current ones (the true snapshot was taken by the
    delivery that applied it). A duplicate carries no features.
    """

    event: Event
    status: EventStatus
    user_features: dict[str, float]
    item_features: dict[str, float]
    position: EventPosition | None = None
    item_attributes: ItemAttributes | None = None
