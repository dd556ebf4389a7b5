"""Prequential evaluation of published slates against baselines on the same replay."""

from __future__ import annotations

from services.evaluation.prequential import PrequentialEvaluator, evaluate_streams
from services.evaluation.report import ReportFiles, summary_lines, write_report
from services.evaluation.results import EvaluationResult
from services.evaluation.settings import BaselineSettings, EvaluationSettings

__all__ = [
    "BaselineSettings",
    "EvaluationResult",
    "EvaluationSettings",
    "PrequentialEvaluator",
    "ReportFiles",
    "evaluate_streams",
    "summary_lines",
    "write_report",
]
