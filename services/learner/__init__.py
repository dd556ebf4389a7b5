"""Online learning in the hot path: delayed labels, River models, drift."""

from __future__ import annotations

from services.learner.settings import LearnerSettings
from services.learner.stage import (
    ONLINE_AFFINITY,
    ONLINE_CART_PROB,
    ONLINE_PURCHASE_PROB,
    LearningStage,
)

__all__ = [
    "ONLINE_AFFINITY",
    "ONLINE_CART_PROB",
    "ONLINE_PURCHASE_PROB",
    "LearnerSettings",
    "LearningStage",
]
