from __future__ import annotations

import argparse

import pytest

from services.bench.offline import add_sample_arguments


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="script")
    add_sample_arguments(parser)
    return parser


@pytest.mark.parametrize("cutoff", ["0", "201", "abc"])
def test_sample_arguments_reject_cutoff_outside_evaluation_range(
    capsys: pytest.CaptureFixture[str], cutoff: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        _parser().parse_args(["rees46", "--cutoff", cutoff])

    assert caught.value.code == 2
    assert (
        f"argument --cutoff: expected an integer from 1 to 200, got {cutoff!r}"
        in capsys.readouterr().err
    )


def test_sample_arguments_accept_longest_cutoff() -> None:
    args = _parser().parse_args(["rees46", "--cutoff", "200"])

    assert args.cutoff == 200


def test_sample_arguments_state_cutoff_range_in_help() -> None:
    text = " ".join(_parser().format_help().split())

    assert "list length K, from 1 to 200" in text
