from __future__ import annotations

import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest


@pytest.fixture
def script(
    load_script: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch
) -> ModuleType:
    module = load_script("bench_session_index")

    def start(function: Any, argument: Any) -> Any:
        raise AssertionError(f"the benchmark started with {argument!r}")

    monkeypatch.setattr(module, "in_fresh_process", start)
    return module


def _row(script: ModuleType, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "index": "hotpath",
        "sessions": 10,
        "max_items": 10,
        "total_items": None,
        "lengths": "full",
        "samples_per_item": 5,
        "catalog": 1000,
        "item_exponent": 1.0,
        "churn": 0.0,
        "recommends": 1,
        "seed": 7,
    }
    return script.Row(**{**values, **overrides})


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--size", "0:10"], "SESSIONS must be at least 1, got 0"),
        (["--size", "-5:10"], "SESSIONS must be at least 1, got -5"),
        (["--size", "100:1"], "ITEMS must be at least 2"),
        (["--size", "100:10:0"], "TOTAL must be at least ITEMS (10) or none"),
        (["--size", "100:x"], "is not SESSIONS:ITEMS[:TOTAL]"),
        (["--catalog", "0"], "--catalog: expected an integer from 1 to"),
        (["--recommends", "0"], "--recommends: expected an integer of at least 1"),
        (
            ["--samples-per-item", "0"],
            "--samples-per-item: expected an integer of at least 1",
        ),
        (["--churn", "-1"], "--churn: expected a finite number of at least 0"),
        (["--churn", "nan"], "--churn: expected a finite number of at least 0"),
        (["--item-exponent", "nan"], "--item-exponent: expected a finite number"),
        (["--item-exponent", "inf"], "--item-exponent: expected a finite number"),
        (["--item-exponent", "-1"], "--item-exponent: expected a finite number"),
        (
            ["--size", "100:10", "--lengths", "full", "--catalog", "5"],
            "--catalog 5 is below ITEMS (10) of a --size",
        ),
    ],
)
def test_bench_session_index_rejects_bad_argument(
    script: ModuleType,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    message: str,
) -> None:
    with pytest.raises(SystemExit) as caught:
        script.main(arguments)

    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_bench_session_index_accepts_size_with_equals(
    script: ModuleType,
) -> None:
    with pytest.raises(AssertionError, match="sessions=100, max_items=10"):
        script.main(["--size=100:10:none", "--lengths", "full", "--index", "api"])


def test_workload_fills_session_when_popularity_too_steep(
    script: ModuleType,
) -> None:
    # Beyond rank 1 the weights are below the precision of their running sum,
    # so random draws find nothing but the most popular item.
    workload = script.Workload(_row(script, item_exponent=400.0))

    started = time.monotonic()
    [(_, _, items)] = workload.block(1)

    assert time.monotonic() - started < 10.0
    assert len(set(items)) == 10


def test_workload_rejects_catalog_smaller_than_a_session(script: ModuleType) -> None:
    with pytest.raises(ValueError, match="catalog of 5 items"):
        script.Workload(_row(script, catalog=5))
