from __future__ import annotations

from pathlib import Path

import pytest

from services.cli.__main__ import main


@pytest.fixture(autouse=True)
def checkpoint_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CARTWHEEL_LEARNER_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("CARTWHEEL_LEARNER_CHECKPOINT_KEY", "secret")


def test_verify_checkpoint_rejects_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["learner", "verify-checkpoint", str(tmp_path)])

    error = capsys.readouterr().err
    assert status == 1
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

    def deny_read(path: Path, key: bytes | None) -> object:
        raise PermissionError(13, "Permission denied", str(path))

    # Tests may run as root, which a file mode cannot lock out.
    monkeypatch.setattr("services.learner.checkpoints.read_checkpoint", deny_read)

    status = main(["learner", "verify-checkpoint", str(checkpoint)])

    error = capsys.readouterr().err
    assert status == 1
    assert error == (
        f"cartwheel: error: checkpoint {checkpoint} cannot be read: Permission "
        "denied; check the path and its permissions\n"
    )
