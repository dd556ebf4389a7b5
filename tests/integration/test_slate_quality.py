"""The offline slate-quality script on a slice of the committed REES46 sample."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.common.settings import child_environment

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "slate_quality.py"


def _run(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "rees46", "--limit", "1200"],
        env=child_environment(extra),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _scores(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if "events, batches of" not in line]


@pytest.fixture(scope="module")
def first() -> subprocess.CompletedProcess[str]:
    return _run({})


def test_same_settings_give_same_scores(
    first: subprocess.CompletedProcess[str],
) -> None:
    second = _run({})

    assert first.returncode == 0, first.stderr[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]
    lines = _scores(first.stdout)
    for recommender in ("cartwheel", "covisitation", "session_knn"):
        assert any(line.startswith(f"{recommender} ") for line in lines)
    assert lines == _scores(second.stdout)


def test_source_weight_changes_the_slates(
    first: subprocess.CompletedProcess[str],
) -> None:
    trending_only = _run(
        {
            "CARTWHEEL_SCORER_CANDIDATES__COVISITATION_WEIGHT": "0",
            "CARTWHEEL_SCORER_CANDIDATES__SESSION_KNN_WEIGHT": "0",
        }
    )

    assert trending_only.returncode == 0, trending_only.stderr[-3000:]
    cartwheel = [
        next(line for line in run.stdout.splitlines() if line.startswith("cartwheel "))
        for run in (first, trending_only)
    ]
    assert cartwheel[0] != cartwheel[1]
