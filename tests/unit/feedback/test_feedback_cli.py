"""The ``cartwheel feedback`` subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from services.common.errors import InvalidSettingsError
from services.feedback import service as feedback_main
from services.feedback.cli import register
from services.feedback.settings import FeedbackSettings


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cartwheel")
    register(parser.add_subparsers(dest="command"))
    return parser


def test_feedback_report_parses_hours() -> None:
    args = make_parser().parse_args(["feedback", "report", "--hours", "2.5"])

    assert args.hours == 2.5
    assert callable(args.handler)


@pytest.mark.parametrize("hours", ["0", "-1", "nan", "inf", "1e308"])
def test_feedback_report_rejects_hours_out_of_range_as_usage_error(
    hours: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        make_parser().parse_args(["feedback", "report", "--hours", hours])

    assert caught.value.code == 2
    assert (
        f"argument --hours: expected a number above 0 and at most 876000, got {hours!r}"
    ) in capsys.readouterr().err


def test_feedback_requires_a_subcommand() -> None:
    with pytest.raises(SystemExit):
        make_parser().parse_args(["feedback"])


def test_feedback_run_rejects_unwritable_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a-file").write_text("")
    data_dir = tmp_path / "a-file" / "feedback"
    settings = FeedbackSettings(data_dir=data_dir)

    def verify_topics(*args: object) -> None:
        raise AssertionError("the data directory is checked before the topics")

    monkeypatch.setattr(feedback_main, "verify_topics", verify_topics)

    with pytest.raises(InvalidSettingsError) as caught:
        feedback_main.run(settings)

    assert f"CARTWHEEL_FEEDBACK_DATA_DIR={str(data_dir)!r}" in str(caught.value)
