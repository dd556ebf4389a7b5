from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from services.demo import cli
from services.replay.errors import DatasetFileError


def test_missing_dataset_creates_no_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_dir = tmp_path / "state"
    report_dir = tmp_path / "report"
    monkeypatch.setenv("CARTWHEEL_DEMO_STATE_DIR", str(state_dir))
    monkeypatch.setenv("CARTWHEEL_DEMO_REPORT_DIR", str(report_dir))
    monkeypatch.setenv("CARTWHEEL_REPLAY_DATA_DIR", str(tmp_path / "data"))
    args = argparse.Namespace(dataset="otto", path=None, limit=None)

    with pytest.raises(DatasetFileError):
        cli._run(args)

    assert not state_dir.exists()
    assert not report_dir.exists()
