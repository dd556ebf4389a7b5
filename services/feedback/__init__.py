"""Feedback app: joins published slates with the user's later events.

The names below are loaded on first use, so that ``python -m
services.feedback`` can handle stop signals before the heavy modules load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.feedback.reader import hit_rate, outcome_counts, outcome_ratios
    from services.feedback.tables import Credit, FeedbackTables, Outcome

__all__ = [
    "Credit",
    "FeedbackTables",
    "Outcome",
    "hit_rate",
    "outcome_counts",
    "outcome_ratios",
]

_MODULES = {
    "Credit": "services.feedback.tables",
    "FeedbackTables": "services.feedback.tables",
    "Outcome": "services.feedback.tables",
    "hit_rate": "services.feedback.reader",
    "outcome_counts": "services.feedback.reader",
    "outcome_ratios": "services.feedback.reader",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
