from __future__ import annotations

from pathlib import Path

import pytest

from services.cli.__main__ import main


def test_main_prints_unknown_dataset_without_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(["replay", "no-such-dataset"])

    error = capsys.readouterr().err
    assert status == 1
    assert error.startswith("cartwheel: error: dataset 'no-such-dataset'")
    assert "Traceback" not in error


def test_main_prints_missing_replay_file_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["replay", "--file", str(tmp_path / "missing.jsonl")])

    error = capsys.readouterr().err
    assert status == 1
    assert "not found or not a regular file" in error
    assert "Traceback" not in error
