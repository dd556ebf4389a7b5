from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.cli.__main__ import main
from services.learner.checkpoints import save_evaluators
from services.replay.datasets import REES46_SAMPLE


@pytest.fixture(autouse=True)
def checkpoint_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CARTWHEEL_LEARNER_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("CARTWHEEL_LEARNER_CHECKPOINT_KEY", "secret")


def test_verify_checkpoint_rejects_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["learner", "verify-checkpoint", str(tmp_path)])

    error = capsys.readouterr().err
    assert status == 2
    assert error.startswith(
        f"cartwheel: error: checkpoint path {tmp_path} is a directory;"
    )
    assert error.count("\n") == 1
    assert "Errno" not in error


def test_verify_checkpoint_reports_unreadable_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    checkpoint = tmp_path / "learner.ckpt"
    checkpoint.write_bytes(b"")

    def deny_read(path: Path, key: bytes | None, key_setting: str) -> object:
        raise PermissionError(13, "Permission denied", str(path))

    # Tests may run as root, which a file mode cannot lock out.
    monkeypatch.setattr("services.learner.checkpoints.read_checkpoint", deny_read)

    status = main(["learner", "verify-checkpoint", str(checkpoint)])

    error = capsys.readouterr().err
    assert status == 2
    assert error == (
        f"cartwheel: error: checkpoint {checkpoint} cannot be read: Permission "
        "denied; check the path and its permissions\n"
    )


def test_verify_checkpoint_reports_missing_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.ckpt"

    status = main(["learner", "verify-checkpoint", str(missing)])

    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.startswith(f"cartwheel: error: no checkpoint at {missing};")
    assert captured.out == ""


def test_verify_checkpoint_reports_missing_default_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["learner", "verify-checkpoint"])

    error = capsys.readouterr().err
    assert status == 2
    assert f"no checkpoint at {tmp_path / 'learner.ckpt'};" in error
    assert "CARTWHEEL_LEARNER_CHECKPOINT_DIR" in error


def test_verify_checkpoint_rejects_fifo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "learner.ckpt"
    os.mkfifo(fifo)

    status = main(["learner", "verify-checkpoint", str(fifo)])

    error = capsys.readouterr().err
    assert status == 2
    assert error == (
        f"cartwheel: error: checkpoint path {fifo} is not a regular file; "
        "expected a file\n"
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not a checkpoint", "is not a Cartwheel checkpoint"),
        (b"CWCKgarbage", "is truncated: it has 11 bytes, fewer than the 38"),
    ],
    ids=["foreign", "cut-in-header"],
)
def test_verify_checkpoint_exits_1_for_rejected_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, reason: str
) -> None:
    checkpoint = tmp_path / "learner.ckpt"
    checkpoint.write_bytes(content)

    status = main(["learner", "verify-checkpoint", str(checkpoint)])

    captured = capsys.readouterr()
    assert status == 1
    assert captured.out.startswith(f"rejected: {checkpoint} {reason}")
    assert captured.err == ""


def test_verify_checkpoint_help_lists_exit_statuses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["learner", "verify-checkpoint", "--help"])

    text = " ".join(capsys.readouterr().out.split())
    assert "Exit status: 0 when the checkpoint is valid" in text
    assert "1 when the learner would reject it on start" in text
    assert "2 when there is no file to check" in text


def test_verify_checkpoint_rejects_empty_path(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["learner", "verify-checkpoint", ""])

    error = capsys.readouterr().err
    assert caught.value.code == 2
    assert "the checkpoint path is empty" in error


def test_verify_checkpoint_reports_too_long_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    too_long = tmp_path / ("c" * 300)

    status = main(["learner", "verify-checkpoint", str(too_long)])

    error = capsys.readouterr().err
    assert status == 2
    assert error == (
        f"cartwheel: error: checkpoint path {too_long} cannot be read: File name "
        "too long; check the path and its permissions\n"
    )


def test_verify_checkpoint_names_key_setting_for_other_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = tmp_path / "learner.ckpt"
    save_evaluators(checkpoint, {}, b"another-key")

    status = main(["learner", "verify-checkpoint", str(checkpoint)])

    output = capsys.readouterr().out
    assert status == 1
    assert "signed with a different key" in output
    assert "compare CARTWHEEL_LEARNER_CHECKPOINT_KEY with the key" in output


def test_verify_checkpoint_names_key_setting_when_key_unset(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("CARTWHEEL_LEARNER_CHECKPOINT_KEY")
    checkpoint = tmp_path / "learner.ckpt"
    save_evaluators(checkpoint, {}, b"secret")

    status = main(["learner", "verify-checkpoint", str(checkpoint)])

    output = capsys.readouterr().out
    assert status == 1
    assert "is signed with a key, but no key is set" in output
    assert "set CARTWHEEL_LEARNER_CHECKPOINT_KEY to the key" in output


def test_verify_checkpoint_does_not_advise_deleting_other_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, content in [
        ("learner.ckpt.lock", b""),
        ("metadata.json", b'{"model_version": "ranker-20261204-83f9f9b-1"}\n'),
    ]:
        path = tmp_path / name
        path.write_bytes(content)

        status = main(["learner", "verify-checkpoint", str(path)])

        output = capsys.readouterr().out
        assert status == 1, name
        assert "is not a Cartwheel checkpoint" in output, name
        assert "delete" not in output, name


def test_evaluate_missing_dataset_names_learner_data_dir(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CARTWHEEL_LEARNER_DATA_DIR", str(tmp_path / "missing"))

    status = main(["learner", "evaluate", "retailrocket"])

    error = capsys.readouterr().err
    assert status == 1
    assert "set CARTWHEEL_LEARNER_DATA_DIR to the folder of the datasets" in error
    assert "CARTWHEEL_REPLAY_DATA_DIR" not in error


def test_evaluate_missing_path_names_path_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.csv"

    status = main(["learner", "evaluate", "rees46", "--path", str(missing)])

    error = capsys.readouterr().err
    assert status == 1
    assert error == (
        f"cartwheel: error: dataset file {str(missing)!r} not found; check the "
        "file or folder given with --path\n"
    )


def test_evaluate_rejects_file_of_other_dataset(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(["learner", "evaluate", "otto", "--path", str(REES46_SAMPLE)])

    error = capsys.readouterr().err
    assert status == 1
    assert error.startswith(
        f"cartwheel: error: no otto events in {str(REES46_SAMPLE)!r}"
    )
