"""The demo end to end on a short slice of the committed REES46 sample."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.settings import child_environment

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_prints_summary_and_writes_report(tmp_path: Path) -> None:
    report_dir = tmp_path / "report"
    environment = child_environment(
        {
            "CARTWHEEL_DEMO_STATE_DIR": str(tmp_path / "state"),
            "CARTWHEEL_DEMO_REPORT_DIR": str(report_dir),
        }
    )

    finished = subprocess.run(
        [sys.executable, "-m", "services.demo", "--limit", "600"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert finished.returncode == 0, finished.stderr[-3000:]
    summary = finished.stdout
    assert "first multi-task model:" in summary
    for recommender in ("cartwheel", "most_popular", "covisitation", "session_knn"):
        assert f"\n{recommender} " in summary
    assert "latency ms: p50" in summary
    assert f"report: {report_dir.resolve() / 'report.md'}" in summary
    metrics = json.loads((report_dir / "metrics.json").read_text())
    assert metrics
    for plot in report_dir.glob("*.png"):
        assert plot.read_bytes().startswith(b"\x89PNG")
    assert len(list(report_dir.glob("*.png"))) >= 3
    # LocalServer.stop removes a pid file only after its process has exited.
    assert not (tmp_path / "state" / "tansu.pid").exists()
    assert not (tmp_path / "state" / "redis.pid").exists()
