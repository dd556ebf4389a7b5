"""The broker benchmark on its own Tansu broker, with a short steady stream."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.common.settings import child_environment

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "bench_broker.py"


def _run(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *arguments],
        env=child_environment({}),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_relay_finishes_every_event_and_prints_its_row() -> None:
    finished = _run("--rates", "200", "--seconds", "1", "--set-ups", "consume,relay")

    assert finished.returncode == 0, finished.stderr
    rows = [line for line in finished.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) == 3
    assert "| 10 | consume |" in rows[1]
    assert "| 10 | relay |" in rows[2]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--rates", "1000,fast"), "expected a number, got 'fast'"),
        (("--rates", "0"), "expected 1 to 100,000, got '0'"),
        (("--rates", "nan"), "expected 1 to 100,000, got 'nan'"),
        (("--rates", "1000,1000"), "expected no repeats"),
        (("--set-ups", "relay,echo"), "expected set-ups among produce"),
        (("--relays", "0"), "expected 1 to 16, got '0'"),
        (("--products-bytes", "-1"), "expected 1 to 1,000,000, got '-1'"),
        (("--fetch-waits-ms", "999999"), "expected 0 to 300,000"),
        (("--rates", "1", "--seconds", "0.5"), "expected at least one event"),
    ],
)
def test_invalid_argument_stops_before_the_broker(
    arguments: tuple[str, ...], message: str
) -> None:
    finished = _run(*arguments)

    assert finished.returncode == 2
    assert message in finished.stderr
