"""Scoring: candidates, ranking, rules and the four recommendation surfaces."""

from __future__ import annotations

from services.scorer.settings import ScorerSettings
from services.scorer.slates import SlateBuilder, Trigger, recommendation_id
from services.scorer.stage import ScoringStage, build_scoring_stage

__all__ = [
    "ScorerSettings",
    "ScoringStage",
    "SlateBuilder",
    "Trigger",
    "build_scoring_stage",
    "recommendation_id",
]
