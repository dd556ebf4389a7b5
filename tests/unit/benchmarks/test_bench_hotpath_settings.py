"""The in-process hot-path benchmark reads its settings as the services do."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest


@pytest.fixture
def bench_hotpath(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("bench_hotpath")


def test_invalid_variable_stops_before_any_work(
    bench_hotpath: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CARTWHEEL_SCORER_WEIGHTS__CLICK", "abc")

    with pytest.raises(SystemExit) as stopped:
        bench_hotpath.main(["--in-process", "--events", "10"])

    assert stopped.value.code == 2
    assert "CARTWHEEL_SCORER_WEIGHTS__CLICK='abc'" in capsys.readouterr().err


def test_max_candidates_replaces_the_variable(
    bench_hotpath: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARTWHEEL_SCORER_CANDIDATES__MAX_CANDIDATES", "80")
    monkeypatch.setenv("CARTWHEEL_SCORER_CANDIDATES__TRENDING_WEIGHT", "0.5")
    parser = bench_hotpath.argparse.ArgumentParser()

    _, scorer = bench_hotpath._in_process_settings(parser, 50)

    assert scorer.candidates.max_candidates == 50
    assert scorer.candidates.trending_weight == 0.5
    assert scorer.item_cache_ttl_seconds == 0.0
