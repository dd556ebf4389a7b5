from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.cli import command
from services.cli.__main__ import main
from tests.entry_points import REPOSITORY, environment_without_settings

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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


def _terminating_parser(*, is_service: bool = False) -> argparse.ArgumentParser:
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
    parser.set_defaults(handler=handler, cleaned_up=cleaned_up, is_service=is_service)
    return parser


@pytest.fixture
def restore_stop_handlers() -> Iterator[None]:
    """Give pytest its SIGINT and SIGTERM handlers back after a stopped command."""
    saved = {signum: signal.getsignal(signum) for signum in _STOP_SIGNALS}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.usefixtures("restore_stop_handlers")
def test_sigterm_stops_command_with_cleanup(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = _terminating_parser()
    monkeypatch.setattr(command, "build_parser", lambda: parser)

    status = main([])

    assert status == 143
    assert capsys.readouterr().err == "cartwheel: terminated\n"
    assert parser.get_default("cleaned_up") == [True]
    # The process is exiting, so a repeated signal must not kill it first.
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_handlers_restored_after_command_without_signal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log-level", default="WARNING")
    parser.set_defaults(handler=lambda args: 0)
    monkeypatch.setattr(command, "build_parser", lambda: parser)
    before = {signum: signal.getsignal(signum) for signum in _STOP_SIGNALS}

    status = main([])

    assert status == 0
    assert {signum: signal.getsignal(signum) for signum in _STOP_SIGNALS} == before


def test_service_sigterm_exits_0_after_cleanup(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = _terminating_parser(is_service=True)
    monkeypatch.setattr(command, "build_parser", lambda: parser)

    status = main([])

    assert status == 0
    assert capsys.readouterr().err == ""
    assert parser.get_default("cleaned_up") == [True]


def test_service_early_interrupt_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    parser = argparse.ArgumentParser()
    parser.add_argument("--log-level", default="WARNING")
    parser.set_defaults(handler=interrupted, is_service=True)
    monkeypatch.setattr(command, "build_parser", lambda: parser)

    status = main([])

    assert status == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["api", "serve"],
        ["catalog", "run"],
        ["hotpath", "run"],
        ["trainer", "run"],
        ["feedback", "run"],
    ],
)
def test_parser_marks_service_commands(
    argv: list[str],
) -> None:
    args = command.build_parser().parse_args(argv)

    assert args.is_service is True


@pytest.mark.parametrize(
    "argv", [["demo"], ["replay"], ["evaluate"], ["trainer", "compare"]]
)
def test_parser_marks_commands_that_finish_as_not_services(argv: list[str]) -> None:
    args = command.build_parser().parse_args(argv)

    assert getattr(args, "is_service", False) is False


def test_entry_module_imports_only_the_standard_library() -> None:
    # Whatever it imports runs before SIGINT and SIGTERM are handled.
    program = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import services.cli.__main__\n"
        "loaded = set(sys.modules) - before\n"
        "top = {name.split('.')[0] for name in loaded}\n"
        "print(sorted(top - sys.stdlib_module_names))\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        env=environment_without_settings(),
        cwd=REPOSITORY,
        timeout=60,
        check=True,
    )

    assert result.stdout == "['services']\n"


def _handles(pid: int, *signals: signal.Signals) -> bool:
    """Return whether a process has its own handler for each of ``signals``."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    mask = int(caught.split()[1], 16)
    return all(mask & (1 << (number - 1)) for number in signals)


@pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads handlers from /proc"
)
@pytest.mark.parametrize(
    ("stop_signal", "status", "message"),
    [
        (signal.SIGINT, 130, "cartwheel: interrupted\n"),
        (signal.SIGTERM, 143, "cartwheel: terminated\n"),
    ],
    ids=["SIGINT", "SIGTERM"],
)
def test_signal_stops_cartwheel_while_its_commands_load(
    stop_signal: signal.Signals, status: int, message: str
) -> None:
    # A non-interactive shell starts a background job with SIGINT ignored.
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "config"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=environment_without_settings(),
        cwd=REPOSITORY,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        # Loading the commands takes half a second or more after this.
        while not _handles(process.pid, signal.SIGINT, signal.SIGTERM):
            assert process.poll() is None, "cartwheel ended before handling signals"
            time.sleep(0.001)
        process.send_signal(stop_signal)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == status
    assert stderr == message


def test_interrupt_while_commands_load_exits_130_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted() -> argparse.ArgumentParser:
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "build_parser", interrupted)

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
    monkeypatch.setattr(command, "build_parser", lambda: parser)

    status = main([])

    captured = capfd.readouterr()
    assert status == 1
    assert captured.err == "cartwheel: error: [Errno 32] Broken pipe\n"
    assert captured.out == "written before the connection broke\n"
