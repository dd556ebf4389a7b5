"""Wire formats shared by every Cartwheel service and by producers in any language."""

from __future__ import annotations

from schemas.catalog import ItemRecord, PromotionRecord, ReviewRecord
from schemas.deadletters import DeadLetter, RejectionReason
from schemas.events import Event, EventContext, EventType
from schemas.recommendations import CandidateSource, Slate, SlateItem, Surface

__all__ = [
    "CandidateSource",
    "DeadLetter",
    "Event",
    "EventContext",
    "EventType",
    "ItemRecord",
    "PromotionRecord",
    "RejectionReason",
    "ReviewRecord",
    "Slate",
    "SlateItem",
    "Surface",
]
