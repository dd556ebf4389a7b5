from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.cli import __main__ as cli
from services.cli.__main__ import main
from tests.entry_points import REPOSITORY, environment_without_settings


def test_main_prints_missing_dataset_file_without_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-file.csv"

    status = main(["replay", "rees46", "--path", str(missing)])

    error = capsys.readouterr().err
    assert status == 1
    assert error.startswith(f"cartwheel: error: dataset file '{missing}' not found")
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


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["replay", "--bogus"], "usage: cartwheel replay "),
        (["hotpath", "run", "--bogus"], "usage: cartwheel hotpath run "),
        (
            ["--log-level", "INFO", "infra", "status", "x"],
            "usage: cartwheel infra status",
        ),
    ],
)
def test_unknown_argument_shows_command_usage(
    capsys: pytest.CaptureFixture[str], argv: list[str], usage: str
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(argv)

    error = capsys.readouterr().err
    assert stopped.value.code == 2
    assert error.startswith(usage)
    assert f"error: unrecognized arguments: {argv[-1]}" in error


def test_missing_command_names_no_internal_field(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["infra", "--bogus"])

    error = capsys.readouterr().err
    assert stopped.value.code == 2
    assert error.startswith("usage: cartwheel infra [-h] COMMAND ...")
    assert "the following arguments are required: COMMAND" in error
    assert "infra_command" not in error


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


def test_interrupt_while_commands_load_exits_130_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted() -> argparse.ArgumentParser:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)

    status = main([])

    assert status == 130
    assert capsys.readouterr().err == "cartwheel: interrupted\n"


def test_main_exits_141_quietly_when_stdout_has_no_reader() -> None:
    reader, writer = os.pipe()
    os.close(reader)

    try:
        result = subprocess.run(
            [sys.executable, "-m", "services.cli", "config"],
            stdout=writer,
            stderr=subprocess.PIPE,
            env=environment_without_settings(),
            cwd=REPOSITORY,
            timeout=120,
            check=False,
        )
    finally:
        os.close(writer)

    assert result.returncode == 141
    assert result.stderr == b""


def test_main_reports_broken_pipe_of_another_connection(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    def handler(args: argparse.Namespace) -> int:
        print("written before the connection broke")
        ours, theirs = socket.socketpair()
        theirs.close()
        with ours:
            ours.sendall(b"PING\r\n")
        return 0

    parser = argparse.ArgumentParser()
    parser.add_argument("--log-level", default="WARNING")
    parser.set_defaults(handler=handler)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)

    status = main([])

    captured = capfd.readouterr()
    assert status == 1
    assert captured.err == "cartwheel: error: [Errno 32] Broken pipe\n"
    assert captured.out == "written before the connection broke\n"
