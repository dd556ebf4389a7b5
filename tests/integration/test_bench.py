"""``cartwheel bench`` end to end on a short synthetic stream."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from services.common.settings import child_environment

pytestmark = pytest.mark.integration

EVENTS = 1500


def run_bench_command(report_dir: Path, *options: str) -> str:
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "bench",
            "--warmup-events",
            "0",
            "--seed",
            "3",
            "--report",
            str(report_dir),
            *options,
        ],
        env=child_environment({}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished.stdout


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    report_dir = tmp_path_factory.mktemp("bench")
    return run_bench_command(report_dir, "--events", str(EVENTS)), report_dir


@pytest.fixture(scope="module")
def report(bench_run: tuple[str, Path]) -> dict[str, Any]:
    return dict(json.loads((bench_run[1] / "bench.json").read_text()))


def test_bench_one_slate_per_event(report: dict[str, Any]) -> None:
    measured = report["measured"]

    assert measured["events_sent"] == EVENTS
    assert measured["slates"] == EVENTS
    assert measured["duplicate_slates"] == 0
    assert measured["unknown_slates"] == 0
    assert measured["invalid_messages"] == 0
    assert measured["stopped_by"] == "all events"


def test_bench_rate_covers_measured_phase(report: dict[str, Any]) -> None:
    measured = report["measured"]
    # The rate counts the slates of the measured phase over the time between
    # its first and last slate, which lies inside the phase's duration.
    timed_slates = measured["slates"] - 1

    assert measured["events_per_second"] * measured["seconds"] >= timed_slates - 1


def test_bench_two_processes_time_limit(tmp_path: Path) -> None:
    run_bench_command(
        tmp_path,
        "--events",
        "20000",
        "--max-seconds",
        "3",
        "--instances",
        "2",
    )
    report = json.loads((tmp_path / "bench.json").read_text())
    measured = report["measured"]
    # Neither the wait for the group to settle nor the slates read after the
    # time limit may count in the measured window.
    timed_slates = measured["slates"] - 1

    assert report["run"]["instances"] == 2
    assert measured["stopped_by"] == "max-seconds"
    assert measured["slates"] <= measured["events_sent"]
    assert measured["events_per_second"] * measured["seconds"] >= timed_slates - 1


def test_bench_latency_percentiles_ordered(report: dict[str, Any]) -> None:
    for name in ("event_to_slate_ms", "in_process_ms"):
        latency = report["measured"][name]

        assert all(math.isfinite(latency[key]) for key in ("p50", "p95", "p99"))
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]


def test_bench_memory_and_pass_through(report: dict[str, Any]) -> None:
    assert report["measured"]["events_per_second"] > 0
    assert report["memory"]["active_users"] > 0
    assert report["memory"]["user_key_bytes_mean"] > 0
    assert report["pass_through"]["messages_per_second"] > 0


def test_bench_report_profile_and_shop(report: dict[str, Any]) -> None:
    assert report["profile"]["datasets"] == ["rees46"]
    assert report["run"]["seed"] == 3
    assert report["shop"]["items"] >= report["profile"]["sample_items"]


def test_bench_markdown_and_summary(bench_run: tuple[str, Path]) -> None:
    stdout, report_dir = bench_run
    markdown = (report_dir / "bench.md").read_text()

    assert markdown.startswith("# cartwheel bench")
    assert f"| events sent / products slates | {EVENTS:,} / {EVENTS:,} |" in markdown
    assert "## Profile" in markdown
    assert "sustained:" in stdout
    assert f"report: {(report_dir / 'bench.md').resolve()}" in stdout
