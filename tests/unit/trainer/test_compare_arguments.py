"""``cartwheel trainer compare`` option checks, which run before any work."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from services.cli.__main__ import main
from services.cli.command import build_parser


def parse(*argv: str) -> argparse.Namespace:
    return build_parser(("services.trainer.cli",)).parse_args(
        ["trainer", "compare", *argv]
    )


@pytest.fixture(autouse=True)
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a rejected command starts the comparison."""

    def run(args: argparse.Namespace) -> int:
        raise AssertionError("the comparison started")

    monkeypatch.setattr("services.trainer.compare.run", run)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--threads", "0"], "argument --threads: expected a positive integer"),
        (["--threads", "two"], "argument --threads: expected a positive integer"),
        (["--threads", "1000"], "argument --threads: expected 1 to 256 threads"),
        (
            ["--redis-url", "http://user:secret@host"],
            "argument --redis-url: expected a redis://, rediss:// or unix:// URL",
        ),
        (["--seeds", "0"], "argument --seeds: expected a positive integer"),
        (["--seeds", "-3"], "argument --seeds: expected a positive integer"),
        (["--key-prefix", ""], "argument --key-prefix: expected 1-32 letters"),
        (["--key-prefix", "a:b"], "argument --key-prefix: expected 1-32 letters"),
        (["--key-prefix", "k" * 33], "argument --key-prefix: expected 1-32 letters"),
        (["--output", ""], "argument --output: expected a file path"),
    ],
)
def test_compare_rejects_invalid_option(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["trainer", "compare", *argv])

    error = capsys.readouterr().err
    assert caught.value.code == 2
    assert error.splitlines()[-1].startswith(
        f"cartwheel trainer compare: error: {expected}"
    )
    assert "secret" not in error


def test_compare_rejects_missing_output_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "missing" / "out.json"

    with pytest.raises(SystemExit) as caught:
        main(["trainer", "compare", "--output", str(output)])

    error = capsys.readouterr().err.splitlines()[-1]
    assert caught.value.code == 2
    assert error == (
        "cartwheel trainer compare: error: argument --output: the folder "
        f"{str(output.parent)!r} does not exist; create it first"
    )


def test_compare_rejects_folder_as_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["trainer", "compare", "--output", str(tmp_path)])

    error = capsys.readouterr().err.splitlines()[-1]
    assert caught.value.code == 2
    assert f"argument --output: {str(tmp_path)!r} is a folder" in error


def test_compare_rejects_unwritable_output_folder(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Tests may run as root, which a folder mode cannot lock out.
    monkeypatch.setattr("services.trainer.cli.os.access", lambda *args: False)

    with pytest.raises(SystemExit) as caught:
        main(["trainer", "compare", "--output", str(tmp_path / "out.json")])

    error = capsys.readouterr().err.splitlines()[-1]
    assert caught.value.code == 2
    assert f"the folder {str(tmp_path)!r} is not writable" in error


def test_compare_accepts_valid_options(tmp_path: Path) -> None:
    args = parse(
        "--threads",
        "1",
        "--seeds",
        "3",
        "--key-prefix",
        "cw_compare-1",
        "--output",
        str(tmp_path / "out.json"),
    )

    assert args.threads == 1
    assert args.seeds == 3
    assert args.key_prefix == "cw_compare-1"
    assert args.output == tmp_path / "out.json"


def test_compare_names_output_when_write_fails(tmp_path: Path) -> None:
    from services.trainer.compare import _write_results

    output = tmp_path / "removed" / "out.json"

    with pytest.raises(OSError, match="cannot write the results to --output"):
        _write_results(output, {"multi_task": {"auc_click": [0.7]}})


def test_compare_missing_dataset_names_data_dir_option(tmp_path: Path) -> None:
    from services.replay.errors import DatasetFileError
    from services.trainer.compare import build_rows

    with pytest.raises(DatasetFileError) as raised:
        build_rows("retailrocket", tmp_path / "missing", None, "cwcompare")

    message = str(raised.value)
    assert message.endswith("; pass --data-dir with the folder of the datasets")
    assert "--path" not in message


def test_compare_names_unresponsive_redis_url() -> None:
    from services.common.errors import InfrastructureError
    from services.infra import find_free_port
    from services.trainer.compare import _redis_client

    url = f"redis://127.0.0.1:{find_free_port()}/0"

    with pytest.raises(InfrastructureError, match="Redis server at --redis-url failed"):
        with _redis_client(url):
            pass
