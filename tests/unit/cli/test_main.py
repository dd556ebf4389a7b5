from __future__ import annotations

import argparse
import os
import signal
import time
from pathlib import Path

import pytest

from services.cli import __main__ as cli
from services.cli.__main__ import main


def test_main_prints_unknown_dataset_without_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(["replay", "no-such-dataset"])

    error = capsys.readouterr().err
    assert status == 1
    assert error.startswith("cartwheel: error: dataset 'no-such-dataset'")
    assert "Traceback" not in error


def test_demo_rejects_unknown_dataset_before_starting_servers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["demo", "--dataset", "no-such-dataset"])

    captured = capsys.readouterr()
    assert stopped.value.code == 2
    assert "invalid choice: 'no-such-dataset'" in captured.err
    assert "starting a broker" not in captured.out + captured.err


def test_demo_rejects_dataset_without_events() -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["demo", "--dataset", "olist"])

    assert stopped.value.code == 2


def test_demo_rejects_missing_path_before_starting_servers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["demo", "--path", str(tmp_path / "missing.csv")])

    captured = capsys.readouterr()
    assert status == 1
    assert "not found" in captured.err
    assert "starting a broker" not in captured.out + captured.err


def test_main_names_a_folder_given_as_replay_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["replay", "--file", str(tmp_path)])

    error = capsys.readouterr().err
    assert status == 1
    assert "is a folder; expected a file of events" in error


def test_main_prints_missing_replay_file_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["replay", "--file", str(tmp_path / "missing.jsonl")])

    error = capsys.readouterr().err
    assert status == 1
    assert "not found or not a regular file" in error
    assert "Traceback" not in error


def _terminating_parser() -> argparse.ArgumentParser:
    """Return a parser whose only command sends SIGTERM to this process."""
    cleaned_up = []

    def handler(args: argparse.Namespace) -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5.0)
            return 0
        finally:
            cleaned_up.append(True)

    parser = argparse.ArgumentParser()
    parser.add_argument("--log-level", default="WARNING")
    parser.set_defaults(handler=handler, cleaned_up=cleaned_up)
    return parser


def test_sigterm_stops_command_with_cleanup(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = _terminating_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    before = signal.getsignal(signal.SIGTERM)

    status = main([])

    assert status == 143
    assert capsys.readouterr().err == "cartwheel: terminated\n"
    assert parser.get_default("cleaned_up") == [True]
    assert signal.getsignal(signal.SIGTERM) is before
