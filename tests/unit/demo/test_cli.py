from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from services.common.errors import InvalidSettingsError
from services.demo import cli, runner


@pytest.mark.parametrize(
    "variable", ["CARTWHEEL_DEMO_STATE_DIR", "CARTWHEEL_DEMO_REPORT_DIR"]
)
def test_unwritable_folder_stops_before_servers(
    variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("CARTWHEEL_DEMO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("CARTWHEEL_DEMO_REPORT_DIR", str(tmp_path / "report"))
    monkeypatch.setenv(variable, str(blocker / "folder"))
    started = []
    monkeypatch.setattr(runner, "run_demo", lambda *args: started.append(args) or 0)
    args = argparse.Namespace(dataset="rees46", path=None, limit=None)

    with pytest.raises(InvalidSettingsError) as caught:
        cli._run(args)

    assert variable in str(caught.value)
    assert "Not a directory" in str(caught.value)
    assert started == []
