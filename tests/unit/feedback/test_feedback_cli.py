"""The ``cartwheel feedback`` subcommands."""

from __future__ import annotations

import argparse

import pytest

from services.feedback.cli import register


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cartwheel")
    register(parser.add_subparsers(dest="command"))
    return parser


def test_feedback_report_parses_hours() -> None:
    args = make_parser().parse_args(["feedback", "report", "--hours", "2.5"])

    assert args.hours == 2.5
    assert callable(args.handler)


def test_feedback_requires_a_subcommand() -> None:
    with pytest.raises(SystemExit):
        make_parser().parse_args(["feedback"])
