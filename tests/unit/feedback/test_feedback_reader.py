"""Ratios computed from windowed outcome counts."""

from __future__ import annotations

from collections import Counter

import pytest

from services.feedback.reader import OutcomeKey, outcome_ratios
from services.feedback.tables import Outcome


def test_outcome_ratios_divide_by_impressions_of_same_version() -> None:
    counts: Counter[OutcomeKey] = Counter(
        {
            ("products", "v1", Outcome.IMPRESSION): 10,
            ("products", "v1", Outcome.HIT): 3,
            ("products", "v2", Outcome.IMPRESSION): 4,
            ("products", "v2", Outcome.PURCHASE): 1,
        }
    )

    ratios = outcome_ratios(counts)

    assert ratios == {
        ("products", "v1", Outcome.HIT): pytest.approx(0.3),
        ("products", "v2", Outcome.PURCHASE): pytest.approx(0.25),
    }


def test_outcome_ratios_skip_versions_without_impressions() -> None:
    counts: Counter[OutcomeKey] = Counter({("bundles", "v1", Outcome.CLICK): 2})

    ratios = outcome_ratios(counts)

    assert ratios == {}
