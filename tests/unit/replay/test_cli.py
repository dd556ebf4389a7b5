from __future__ import annotations

import argparse
import codecs
import gzip
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from services.cli.__main__ import main as cartwheel_main
from services.replay import cli
from services.replay.__main__ import main
from services.replay.cli import register
from services.replay.datasets import REES46_SAMPLE, replayable_names
from services.replay.replayer import ReplaySummary
from tests.entry_points import environment_without_settings, run_module
from tests.librdkafka_logs import RAW_LIBRDKAFKA_LINE, unreachable_kafka

# One event, gzip-compressed.
_GZIP_EVENT = gzip.compress(b'{"event_id": "e1"}\n')


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cartwheel")
    # ``cartwheel`` itself defines --log-level, which the handler reads.
    parser.add_argument("--log-level")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["replay", *argv])


def test_replay_parses_no_dataset_by_default() -> None:
    args = _parse()

    assert args.dataset is None
    assert args.file is None
    assert args.time_scale is None
    assert args.limit is None


def test_replay_parses_raw_file_options() -> None:
    args = _parse("--file", "bad.jsonl", "--time-scale", "60", "--limit", "10")

    assert args.file == Path("bad.jsonl")
    assert args.time_scale == 60.0
    assert args.limit == 10


def test_replay_list_prints_datasets(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse("--list")

    code = args.handler(args)

    output = capsys.readouterr().out
    assert code == 0
    assert "rees46: " in output
    assert "olist: not replayable" in output


def test_replay_list_marks_missing_datasets(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CARTWHEEL_REPLAY_DATA_DIR", str(tmp_path))
    args = _parse("--list")

    args.handler(args)

    lines = capsys.readouterr().out.splitlines()
    otto = next(line for line in lines if line.startswith("otto: "))
    rees46 = next(line for line in lines if line.startswith("rees46: "))
    assert otto.endswith(" (missing)")
    assert not rees46.endswith(" (missing)")


def test_replay_unknown_dataset_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["movielens"])

    assert caught.value.code == 2
    assert "expected one of diginetica, otto" in capsys.readouterr().err


def test_replay_dataset_without_events_is_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["olist"])

    assert caught.value.code == 2
    assert "dataset 'olist' cannot be replayed" in capsys.readouterr().err


@pytest.mark.parametrize(
    "arguments",
    [["rees46"], ["--path", "x"], ["--limit", "5"], ["--no-catalog"]],
)
def test_replay_list_with_options_usage_error(
    arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--list", *arguments])

    assert caught.value.code == 2
    assert "--list given with" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-3", "abc", "1.5"])
def test_replay_rejects_invalid_limit_as_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--limit", value])

    err = capsys.readouterr().err
    assert caught.value.code == 2
    assert err.startswith("usage: python -m services.replay ")
    assert (
        f"error: argument --limit: expected an integer of 1 or more, got {value!r}"
        in err
    )


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["rees46", "--file", "good.jsonl"], "dataset 'rees46'"),
        (["--file", "good.jsonl", "otto"], "dataset 'otto'"),
        (["--file", "good.jsonl", "--path", "events.csv"], "--path 'events.csv'"),
    ],
    ids=["dataset-first", "dataset-last", "path"],
)
def test_replay_rejects_dataset_with_file(
    arguments: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(arguments)

    err = capsys.readouterr().err
    assert caught.value.code == 2
    assert f"error: --file 'good.jsonl' given with {named}; " in err


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--file", "good.jsonl", "--list"], "--file 'good.jsonl' given with --list;"),
        (["--file", ""], "argument --file: expected a path, got ''"),
    ],
    ids=["list", "empty"],
)
def test_replay_rejects_file_usage(
    arguments: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(arguments)

    assert caught.value.code == 2
    assert expected in capsys.readouterr().err


def test_cartwheel_replay_rejects_dataset_with_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        cartwheel_main(["replay", "rees46", "--file", "good.jsonl"])

    err = capsys.readouterr().err
    assert caught.value.code == 2
    assert "cartwheel replay: error: --file 'good.jsonl' given with dataset" in err


def test_replay_without_broker_reports_only_error(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", unreachable_kafka().bootstrap)

    code = main(["rees46"])

    err = capfd.readouterr().err
    assert code == 2
    assert "Kafka broker" in err.splitlines()[-1]
    assert RAW_LIBRDKAFKA_LINE.search(err) is None


def test_module_help_names_module_once() -> None:
    result = run_module("services.replay", environment_without_settings(), "--help")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m services.replay [-h]")
    assert "services.replay replay" not in result.stdout
    assert "--time-scale" in result.stdout


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "-inf", "fast"])
def test_replay_rejects_invalid_time_scale_as_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main([f"--time-scale={value}"])

    err = capsys.readouterr().err
    assert caught.value.code == 2
    assert (
        "error: argument --time-scale: expected a finite number above 0, "
        f"got {value!r}" in err
    )


def test_replay_help_lists_replayable_datasets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        _parse("--help")

    help_text = " ".join(capsys.readouterr().out.split())
    assert f"dataset to publish: {', '.join(replayable_names())}" in help_text
    assert "olist" not in help_text


def test_replay_rejects_file_of_other_dataset(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # With an unreachable broker, exit status 1 shows the file was checked first.
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", unreachable_kafka().bootstrap)

    code = main(["otto", "--path", str(REES46_SAMPLE)])

    err = capsys.readouterr().err
    assert code == 1
    assert f"no otto events in {str(REES46_SAMPLE)!r}" in err


def test_replay_missing_data_dir_names_replay_setting(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CARTWHEEL_REPLAY_DATA_DIR", str(tmp_path / "missing"))

    code = main(["taobao"])

    err = capsys.readouterr().err
    assert code == 1
    assert "set CARTWHEEL_REPLAY_DATA_DIR to the folder of the datasets" in err


def test_replay_names_truncated_dataset_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # With an unreachable broker, exit status 1 shows the file was checked first.
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", unreachable_kafka().bootstrap)
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(REES46_SAMPLE.read_bytes()[:30_000])

    code = main(["rees46", "--path", str(path)])

    err = capsys.readouterr().err
    assert code == 1
    assert err == (
        f"services.replay: error: dataset file {str(path)!r} cannot be read: the "
        "gzip data is truncated (Compressed file ended before the end-of-stream "
        "marker was reached); expected a complete UTF-8 text file, "
        "gzip-compressed exactly when its name ends in .gz; check the file or "
        "folder given with --path\n"
    )


def test_replay_names_stray_quote_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", unreachable_kafka().bootstrap)
    lines = gzip.decompress(REES46_SAMPLE.read_bytes()).decode().splitlines()
    fields = lines[100].split(",")
    fields[5] = '"' + fields[5]
    lines[100] = ",".join(fields)
    path = tmp_path / "quote.csv"
    path.write_text("\n".join(lines) + "\n")

    code = main(["rees46", "--path", str(path), "--limit", "1"])

    err = capsys.readouterr().err
    assert code == 1
    assert len(err.splitlines()) == 1
    assert err.startswith(
        f"services.replay: error: dataset file {str(path)!r} line 101: a field "
        "starts with a double quote that is not closed on that line"
    )


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.jsonl", b"", "is empty; expected one JSON event per line"),
        ("blank.jsonl", b"\n \n", "has only blank lines; expected one JSON event"),
        ("bom.jsonl", codecs.BOM_UTF8 + b"\r\n", "has only blank lines; expected"),
        ("junk.jsonl.gz", b"junk\n", "the file is not gzip-compressed"),
        (
            "tail.jsonl.gz",
            _GZIP_EVENT + b"junk",
            f"the gzip data takes the first {len(_GZIP_EVENT)} bytes, and the 4 "
            "bytes after them are not gzip",
        ),
        ("image.png", b"\x89PNG\r\n\x1a\n", "is not text: byte 0x89 at offset 0"),
    ],
    ids=["empty", "blank", "bom-and-blank", "not-gzip", "gzip-then-junk", "binary"],
)
def test_replay_checks_file_before_connecting(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: bytes,
    expected: str,
) -> None:
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", unreachable_kafka().bootstrap)
    path = tmp_path / name
    path.write_bytes(content)

    code = main(["--file", str(path)])

    err = capsys.readouterr().err
    assert code == 1
    assert len(err.splitlines()) == 1
    assert f"replay file {str(path)!r}" in err
    assert expected in err


def _replay_file_returning(
    summary: ReplaySummary,
) -> Callable[..., ReplaySummary]:
    def replay_file(*args: object, **kwargs: object) -> ReplaySummary:
        return summary

    return replay_file


def test_replay_file_without_valid_line_fails(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("user_id,item_id\nu1,i1\nu2,i2\n")
    summary = ReplaySummary(
        "file:orders.csv", rejected_by_reason=Counter({"invalid_json": 3})
    )
    monkeypatch.setattr(cli, "replay_file", _replay_file_returning(summary))
    monkeypatch.setenv("CARTWHEEL_TOPIC_DEAD_LETTERS", "shop.dlq")

    code = main(["--file", str(path)])

    captured = capsys.readouterr()
    assert code == 1
    assert "rejected: 3 (invalid_json 3)" in captured.out
    assert captured.err.splitlines() == [
        f"services.replay: error: none of the 3 line(s) read from replay file "
        f"{str(path)!r} is a valid event, so each went to the dead-letter topic "
        "'shop.dlq' with its reason; expected one JSON event object per line, "
        "as schemas/json/event.schema.json describes"
    ]


def test_replay_file_of_blank_lines_past_first_block_fails(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "blank.jsonl"
    path.write_bytes(b"\n" * 70_000)
    summary = ReplaySummary("file:blank.jsonl", blank_lines=70_000)
    monkeypatch.setattr(cli, "replay_file", _replay_file_returning(summary))

    code = main(["--file", str(path)])

    captured = capsys.readouterr()
    assert code == 1
    assert "blank lines skipped: 70000" in captured.out
    assert captured.err.splitlines() == [
        f"services.replay: error: replay file {str(path)!r} has only blank lines; "
        "expected one JSON event per line"
    ]


def test_replay_file_with_one_valid_line_succeeds(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("{}\n")
    summary = ReplaySummary(
        "file:events.jsonl",
        events_by_type=Counter({"click": 1}),
        rejected_by_reason=Counter({"invalid_json": 2}),
    )
    monkeypatch.setattr(cli, "replay_file", _replay_file_returning(summary))

    code = main(["--file", str(path)])

    captured = capsys.readouterr()
    assert code == 0
    assert "events published: 1 (click 1)" in captured.out
    assert captured.err == ""
