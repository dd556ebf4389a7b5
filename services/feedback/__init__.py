"""Feedback app: joins published slates with the user's later events."""

from __future__ import annotations

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
