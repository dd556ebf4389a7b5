from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import InvalidSettingsError
from services.demo.state_dir import clear_run_state


def test_foreign_models_folder_is_kept(tmp_path: Path) -> None:
    source = tmp_path / "models" / "ranker.py"
    source.parent.mkdir()
    source.write_text("print('mine')\n")

    with pytest.raises(InvalidSettingsError) as caught:
        clear_run_state(tmp_path)

    message = str(caught.value)
    assert "CARTWHEEL_DEMO_STATE_DIR" in message
    assert repr(str(tmp_path)) in message
    assert "models/" in message
    assert len(message.splitlines()) == 1
    assert source.read_text() == "print('mine')\n"


def test_earlier_run_state_is_cleared(tmp_path: Path) -> None:
    clear_run_state(tmp_path)
    for name in ("learner", "models", "feedback", "logs"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "old").write_text("")
    broker_log = tmp_path / "tansu.log"
    broker_log.write_text("")

    clear_run_state(tmp_path)

    assert sorted(path.name for path in tmp_path.iterdir()) == [
        ".cartwheel-demo-state",
        "tansu.log",
    ]


def test_new_folder_is_created_and_marked(tmp_path: Path) -> None:
    state_dir = tmp_path / "new" / "state"

    clear_run_state(state_dir)

    assert (state_dir / ".cartwheel-demo-state").is_file()


def test_folder_without_run_state_is_used(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("keep")

    clear_run_state(tmp_path)

    assert notes.read_text() == "keep"
    assert (tmp_path / ".cartwheel-demo-state").is_file()


def test_unmarked_default_folder_is_cleared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    state_dir = (tmp_path / ".cartwheel" / "demo").resolve()
    (state_dir / "models").mkdir(parents=True)

    clear_run_state(state_dir)

    assert not (state_dir / "models").exists()
    assert (state_dir / ".cartwheel-demo-state").is_file()
