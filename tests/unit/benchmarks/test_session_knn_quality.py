from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest


@pytest.fixture
def script(load_script_until_sample: Callable[[str], ModuleType]) -> ModuleType:
    return load_script_until_sample("session_knn_quality")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CARTWHEEL_SCORER_CANDIDATES__SESSION_MAX_ITEMS", "1"),
        # A misspelled name of a block, which would otherwise be ignored.
        ("CARTWHEEL_SCORER_CANDIDATES__SESSION_HALF_LIFE", "60"),
        ("CARTWHEEL_EVALUATION_BASELINE_KNN_NEIGHBORS", "abc"),
        ("CARTWHEEL_REPLAY_DATA_DIR", ""),
    ],
)
def test_session_knn_quality_rejects_invalid_variable_before_sample(
    script: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SystemExit) as caught:
        script.main(["rees46"])

    assert caught.value.code == 2
    assert f"error: invalid setting {variable}={value!r}: " in capsys.readouterr().err


def test_session_knn_quality_reads_scorer_and_baseline_variables(
    script: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARTWHEEL_SCORER_CANDIDATES__SESSION_NEIGHBOURS", "7")
    monkeypatch.setenv("CARTWHEEL_EVALUATION_BASELINE_KNN_NEIGHBORS", "9")
    used: dict[str, Any] = {}

    def evaluate(events: Any, settings: Any, baseline: Any, cutoff: int) -> Any:
        used.update(settings=settings, baseline=baseline)
        return 0, {}

    monkeypatch.setattr(script, "load_sample", lambda *args: (None, []))
    monkeypatch.setattr(script, "evaluate", evaluate)

    script.main(["rees46", "--half-life", "60"])

    assert used["settings"].session_neighbours == 7
    assert used["settings"].session_half_life_seconds == 60.0
    assert used["baseline"].knn_neighbors == 9
