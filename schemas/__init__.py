"""Wire formats shared by every Cartwheel service and by producers in any language."""

from __future__ import annotations

from schemas.catalog import ItemRecord, PromotionRecord, ReviewRecord
from schemas.deadletters import DeadLetter, RejectionReason
from schemas.events import Event, EventContext, EventType
from schemas.recommendations import CandidateSource, Slate, SlateItem, Surface
from schemas.training import TrainingExample
from schemas.validation import MAX_EVENT_BYTES, Rejection, parse_event

__all__ = [
    "MAX_EVENT_BYTES",
    "CandidateSource",
    "DeadLetter",
    "Event",
    "EventContext",
    "EventType",
    "ItemRecord",
    "PromotionRecord",
    "Rejection",
    "RejectionReason",
    "ReviewRecord",
    "Slate",
    "SlateItem",
    "Surface",
    "TrainingExample",
    "parse_event",
]
