from __future__ import annotations

import argparse

import pytest

from services.cli.__main__ import main
from services.cli.arguments import (
    integer_at_least,
    integer_between,
    positive_number,
    positive_number_at_most,
)


def test_integer_at_least_accepts_minimum() -> None:
    parse = integer_at_least(2)

    assert parse("2") == 2


@pytest.mark.parametrize(
    "text", ["1", "-2", "two", "2.0", "", " 3", "3 ", "1_000", "\u0663"]
)
def test_integer_at_least_rejects_bad_text(text: str) -> None:
    parse = integer_at_least(2)

    with pytest.raises(argparse.ArgumentTypeError) as caught:
        parse(text)

    assert str(caught.value) == f"expected an integer of 2 or more, got {text!r}"


def test_integer_between_accepts_both_ends() -> None:
    parse = integer_between(1, 65535)

    assert parse("1") == 1
    assert parse("65535") == 65535


@pytest.mark.parametrize("text", ["0", "65536", "80.0", " 80", "http"])
def test_integer_between_rejects_bad_text(text: str) -> None:
    parse = integer_between(1, 65535)

    with pytest.raises(argparse.ArgumentTypeError) as caught:
        parse(text)

    assert str(caught.value) == f"expected an integer from 1 to 65535, got {text!r}"


def test_positive_number_accepts_fraction() -> None:
    assert positive_number("0.5") == 0.5


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "fast"])
def test_positive_number_rejects_bad_text(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as caught:
        positive_number(text)

    assert str(caught.value) == f"expected a finite number above 0, got {text!r}"


def test_positive_number_at_most_accepts_maximum() -> None:
    parse = positive_number_at_most(60)

    assert parse("60") == 60.0


@pytest.mark.parametrize("text", ["0", "-1", "60.5", "nan", "inf", "", "soon"])
def test_positive_number_at_most_rejects_bad_text(text: str) -> None:
    parse = positive_number_at_most(60)

    with pytest.raises(argparse.ArgumentTypeError) as caught:
        parse(text)

    assert str(caught.value) == (
        f"expected a number above 0 and at most 60, got {text!r}"
    )


@pytest.mark.parametrize(
    ("command", "minimum"), [(["demo"], 2), (["replay"], 1)], ids=["demo", "replay"]
)
def test_limit_below_minimum_is_usage_error(
    command: list[str], minimum: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main([*command, "--limit", "0"])

    err = capsys.readouterr().err
    assert caught.value.code == 2
    assert f"argument --limit: expected an integer of {minimum} or more" in err


@pytest.mark.parametrize(
    ("command", "option", "expected"),
    [
        (["api", "serve"], "--port", "expected an integer from 1 to 65535"),
        (["learner", "evaluate"], "--batch-size", "expected an integer of 1 or more"),
        (["bench"], "--seed", "expected an integer of 0 or more"),
    ],
    ids=["api-port", "learner-batch-size", "bench-seed"],
)
def test_integer_option_rejects_padded_text(
    command: list[str],
    option: str,
    expected: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        main([*command, option, " 80"])

    err = capsys.readouterr().err
    assert caught.value.code == 2
    assert f"argument {option}: {expected}, got ' 80'" in err


def test_bench_rejects_unknown_calibration_dataset(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["bench", "--calibrate-on", "nosuch"])

    err = capsys.readouterr().err
    assert caught.value.code == 2
    assert "argument --calibrate-on: invalid choice: 'nosuch'" in err
