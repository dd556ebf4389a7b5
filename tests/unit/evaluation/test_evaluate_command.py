from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.cli.__main__ import main
from services.cli.command import build_parser
from services.common.errors import InvalidSettingsError
from services.evaluation import cli as evaluation_cli
from services.evaluation.cli import register, run_evaluate
from services.evaluation.settings import EvaluationSettings


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cartwheel")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(list(argv))


def test_evaluate_command_parses_its_options() -> None:
    args = parse(
        "evaluate",
        "--output",
        "out",
        "--throughput",
        "900",
        "--timeout",
        "5",
        "--score-from",
        "2019-10-01T01:00:00+00:00",
    )

    assert args.command == "evaluate"
    assert args.output == "out"
    assert args.throughput == 900.0
    assert args.timeout == 5.0
    assert args.score_from == "2019-10-01T01:00:00+00:00"
    assert args.handler is run_evaluate


def test_evaluate_command_help_mentions_baselines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        parse("evaluate", "--help")

    assert "session-kNN" in capsys.readouterr().out


def test_settings_reject_unsorted_cutoffs() -> None:
    with pytest.raises(ValueError, match="ascending"):
        EvaluationSettings(cutoffs=(20, 5))


@pytest.mark.parametrize("value", ["[5, 10.0]", "[5, true]", '[5, "10"]'])
def test_cutoffs_variable_rejects_non_integer_items(
    value: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CARTWHEEL_EVALUATION_CUTOFFS", value)

    with pytest.raises(InvalidSettingsError) as caught:
        run_evaluate(parse("evaluate", "--output", str(tmp_path)))

    message = str(caught.value)
    assert f"CARTWHEEL_EVALUATION_CUTOFFS={value!r}" in message
    assert "expected whole list lengths" in message


def test_evaluate_command_plugs_into_cartwheel_parser() -> None:
    parser = build_parser(areas=("services.evaluation.cli",))

    args = parser.parse_args(["evaluate", "--group-id", "g1"])

    assert args.group_id == "g1"
    assert args.handler is run_evaluate


def test_settings_reject_score_from_without_offset() -> None:
    with pytest.raises(ValueError, match="expected an RFC 3339 time with a UTC offset"):
        EvaluationSettings(score_from="2019-10-01T01:00:00")


def test_settings_read_leap_second_score_from_as_event_times_are_read() -> None:
    settings = EvaluationSettings(score_from="2016-12-31T23:59:60Z")

    assert settings.score_from == datetime(
        2016, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "value",
    ["0001-01-01T00:30:00+01:00", "2019-10-01 01:00:00Z", "2019-10-01T01:00Z"],
    ids=["before_year_1_in_utc", "space_separator", "no_seconds"],
)
def test_evaluate_command_rejects_score_from_that_events_reject(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["evaluate", "--score-from", value, "--output", str(tmp_path)])

    assert status == 2
    err = capsys.readouterr().err
    assert f"invalid option --score-from={value!r}" in err
    assert "expected an RFC 3339 time" in err


@pytest.mark.parametrize(
    "value", ["20191001", "0", "-1", "5.5", "1569891600", " 2019 "]
)
def test_settings_reject_numeric_score_from(value: str) -> None:
    with pytest.raises(ValueError, match="a bare number would be read as Unix seconds"):
        EvaluationSettings(score_from=value)


def test_numeric_score_from_variable_is_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CARTWHEEL_EVALUATION_SCORE_FROM", "20191001")

    with pytest.raises(InvalidSettingsError) as caught:
        run_evaluate(parse("evaluate", "--output", str(tmp_path)))

    message = str(caught.value)
    assert "CARTWHEEL_EVALUATION_SCORE_FROM='20191001'" in message
    assert "a bare number would be read as Unix seconds" in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "reported"),
    [
        (("--bootstrap", "nohost"), "invalid option --bootstrap='nohost'"),
        (("--timeout", "-1"), "invalid option --timeout=-1.0"),
        (("--timeout", "inf"), "invalid option --timeout=inf"),
    ],
)
def test_evaluate_command_reports_rejected_option_value(
    monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...], reported: str
) -> None:
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", "127.0.0.1:29392")
    monkeypatch.setenv("CARTWHEEL_EVALUATION_READ_TIMEOUT_SECONDS", "30")

    with pytest.raises(InvalidSettingsError) as caught:
        run_evaluate(parse("evaluate", *argv))

    assert str(caught.value).startswith(reported)
    assert "29392" not in str(caught.value)
    assert "'30'" not in str(caught.value)


@pytest.mark.parametrize("value", ["-5", "0", "nan", "inf", "fast"])
def test_evaluate_command_rejects_bad_throughput(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse("evaluate", "--throughput", value)

    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert (
        f"argument --throughput: expected a finite number above 0, got {value!r}" in err
    )


def _fail_if_topics_are_read(*_: object) -> None:
    raise AssertionError("the topics were read before the report folder was checked")


def test_evaluate_checks_output_folder_before_reading(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(evaluation_cli, "read_topics", _fail_if_topics_are_read)
    (tmp_path / "a-file").write_text("")
    output = tmp_path / "a-file" / "report"

    with pytest.raises(InvalidSettingsError) as caught:
        run_evaluate(parse("evaluate", "--output", str(output)))

    message = str(caught.value)
    assert message.startswith(
        f"invalid option --output={str(output)!r} (in place of "
        "CARTWHEEL_EVALUATION_REPORT_DIR): "
    )
    assert message.endswith("; expected a directory this process can create and write")


def test_evaluate_checks_report_dir_setting_before_reading(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(evaluation_cli, "read_topics", _fail_if_topics_are_read)
    (tmp_path / "a-file").write_text("")
    report_dir = tmp_path / "a-file" / "report"
    monkeypatch.setenv("CARTWHEEL_EVALUATION_REPORT_DIR", str(report_dir))

    with pytest.raises(InvalidSettingsError) as caught:
        run_evaluate(parse("evaluate"))

    assert str(caught.value).startswith(
        f"invalid setting CARTWHEEL_EVALUATION_REPORT_DIR={str(report_dir)!r}: "
    )


def test_evaluate_rejects_blank_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluation_cli, "read_topics", _fail_if_topics_are_read)

    with pytest.raises(InvalidSettingsError) as caught:
        run_evaluate(parse("evaluate", "--output", ""))

    assert str(caught.value).startswith(
        "invalid option --output='' (in place of CARTWHEEL_EVALUATION_REPORT_DIR): "
        "a blank path would mean the current directory"
    )
