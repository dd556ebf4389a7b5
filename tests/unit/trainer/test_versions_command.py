from __future__ import annotations

from pathlib import Path

import pytest

from services.cli.__main__ import main


def test_versions_lists_oldest_first_with_champion(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for version in ("ranker-20260101-000000-2", "ranker-20260101-000000-10"):
        (tmp_path / "ranker" / version).mkdir(parents=True)
    (tmp_path / "ranker" / "CHAMPION").write_text("ranker-20260101-000000-10\n")
    monkeypatch.setenv("CARTWHEEL_TRAINER_REGISTRY_DIR", str(tmp_path))

    status = main(["trainer", "versions"])

    captured = capsys.readouterr()
    assert status == 0
    assert captured.out.splitlines() == [
        "ranker-20260101-000000-2",
        "ranker-20260101-000000-10  champion",
    ]
    assert captured.err == ""


def test_versions_empty_registry_says_so(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CARTWHEEL_TRAINER_REGISTRY_DIR", str(tmp_path))

    status = main(["trainer", "versions"])

    captured = capsys.readouterr()
    assert status == 0
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1
    assert captured.err.startswith("no versions of ranker found")
    assert f"{tmp_path} (CARTWHEEL_TRAINER_REGISTRY_DIR) contains none" in captured.err


def test_versions_missing_registry_says_so(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry = tmp_path / "registry"
    monkeypatch.setenv("CARTWHEEL_TRAINER_REGISTRY_DIR", str(registry))

    status = main(["trainer", "versions"])

    captured = capsys.readouterr()
    assert status == 0
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1
    assert (
        f"{registry} (CARTWHEEL_TRAINER_REGISTRY_DIR) does not exist yet"
        in captured.err
    )
    assert not registry.exists()


def test_versions_registry_file_fails(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry = tmp_path / "registry"
    registry.write_text("")
    monkeypatch.setenv("CARTWHEEL_TRAINER_REGISTRY_DIR", str(registry))

    status = main(["trainer", "versions"])

    error = capsys.readouterr().err
    assert status == 1
    assert error.startswith(f"cartwheel: error: the registry folder {registry} ")
    assert "(CARTWHEEL_TRAINER_REGISTRY_DIR) is not a folder" in error
