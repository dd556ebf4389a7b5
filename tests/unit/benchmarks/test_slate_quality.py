from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from services.bench.offline import load_sample
from services.replay.settings import DEFAULT_DATA_DIR
from tests.unit.benchmarks.sample import SampleLoadedError


@pytest.fixture
def script(load_script_until_sample: Callable[[str], ModuleType]) -> ModuleType:
    return load_script_until_sample("slate_quality")


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "CARTWHEEL_SCORER_CANDIDATES__COVISITATION_WEIGHT",
            "abc",
            "expected a number from 0 to 100: score of the best co-visited item",
        ),
        (
            "CARTWHEEL_HOTPATH_DEDUPE_SIZE",
            "abc",
            "expected an integer from 1 to 1024: event ids remembered per user",
        ),
        ("CARTWHEEL_EVALUATION_CUTOFFS", "abc", "the value is not valid JSON"),
        ("CARTWHEEL_LEARNER_AFFINITY_FACTORS", "0", "an integer from 1 to 128"),
        (
            "CARTWHEEL_EVALUATION_BASELINE_KNN_NEIGHBORS",
            "0",
            "an integer from 1 to 1000",
        ),
    ],
)
def test_slate_quality_rejects_invalid_variable_before_sample(
    script: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    expected: str,
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SystemExit) as caught:
        script.main(["rees46"])

    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert f"error: invalid setting {variable}={value!r}: " in error
    assert expected in error
    assert "Traceback" not in error


def test_slate_quality_reports_every_invalid_variable(
    script: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CARTWHEEL_SCORER_CANDIDATES__TRENDING_WEIGHT", "-1")
    monkeypatch.setenv("CARTWHEEL_HOTPATH_MAX_PAIRS", "0")

    with pytest.raises(SystemExit):
        script.main(["rees46"])

    error = capsys.readouterr().err
    assert "CARTWHEEL_SCORER_CANDIDATES__TRENDING_WEIGHT='-1'" in error
    assert "CARTWHEEL_HOTPATH_MAX_PAIRS='0'" in error


def test_slate_quality_stops_on_misspelled_variable(
    script: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CARTWHEEL_SCORER_CANDIDATES__COVISITATON_WEIGHT", "0.5")

    with pytest.raises(SystemExit) as caught:
        script.main(["rees46"])

    assert caught.value.code == 2
    assert (
        "invalid setting CARTWHEEL_SCORER_CANDIDATES__COVISITATON_WEIGHT='0.5'"
    ) in capsys.readouterr().err


def test_slate_quality_ignores_kafka_and_redis_variables(
    script: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_KAFKA_SECURITY_PROTOCOL", "bogus")
    monkeypatch.setenv("CARTWHEEL_REDIS_URL", "http://not-redis")

    with pytest.raises(SampleLoadedError):
        script.main(["rees46"])


def test_slate_quality_rejects_blank_data_folder(
    script: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CARTWHEEL_REPLAY_DATA_DIR", "")

    with pytest.raises(SystemExit) as caught:
        script.main(["otto"])

    assert caught.value.code == 2
    assert (
        "invalid setting CARTWHEEL_REPLAY_DATA_DIR='': a blank path would mean "
        "the current directory"
    ) in capsys.readouterr().err


def test_slate_quality_reads_sample_from_replay_data_folder(
    script: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CARTWHEEL_REPLAY_DATA_DIR", raising=False)
    folders: list[Path] = []

    def load_sample(parser: Any, args: Any, settings: Any) -> Any:
        folders.append(settings.data_dir)
        raise SampleLoadedError(args.dataset)

    monkeypatch.setattr(script, "load_sample", load_sample)

    with pytest.raises(SampleLoadedError):
        script.main(["otto"])

    assert folders == [DEFAULT_DATA_DIR]


class _StagesStartedError(Exception):
    """Raised in place of running the stages."""


@pytest.mark.parametrize(
    ("variable", "arguments", "expected"),
    [(None, [], 500), ("37", [], 37), ("37", ["--batch-size", "11"], 11)],
)
def test_batch_size_defaults_to_hotpath(
    script: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    variable: str | None,
    arguments: list[str],
    expected: int,
) -> None:
    if variable is None:
        monkeypatch.delenv("CARTWHEEL_HOTPATH_BATCH_SIZE", raising=False)
    else:
        monkeypatch.setenv("CARTWHEEL_HOTPATH_BATCH_SIZE", variable)
    batch_sizes: list[int] = []

    def run_stages(events: Any, catalog: Any, settings: Any, *rest: Any) -> Any:
        batch_sizes.append(settings.hotpath.batch_size)
        raise _StagesStartedError

    monkeypatch.setattr(script, "load_sample", load_sample)
    monkeypatch.setattr(script, "run_stages", run_stages)

    with pytest.raises(_StagesStartedError):
        script.main(["rees46", "--limit", "20", *arguments])

    assert batch_sizes == [expected]


def test_batch_size_above_range_rejected(
    script: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        script.main(["rees46", "--batch-size", "100001"])

    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert (
        "invalid option --batch-size=100001 (in place of CARTWHEEL_HOTPATH_BATCH_SIZE)"
        in error
    )
    assert "expected an integer from 1 to 100,000" in error
