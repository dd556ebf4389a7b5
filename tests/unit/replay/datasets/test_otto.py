from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pytest

from services.replay.datasets import otto
from services.replay.errors import DatasetFileError


def test_otto_matches_shared_source(
    shared_dataset: Callable[[str], tuple[Path, dict[str, int]]],
) -> None:
    folder, lines = shared_dataset("otto-recsys")
    name = "otto_sample_before-2022-08-21T22Z.jsonl.gz"

    dataset = otto.load(folder / name)

    # One JSON line per OTTO session, without a header.
    assert dataset.summary.rows_read[name] == lines[name] == 10
    assert dataset.summary.events_by_type == {
        "click": 597,
        "cart_add": 34,
        "purchase": 8,
    }
    assert not dataset.summary.unparseable


def test_otto_counts_bad_lines_and_derives_sessions(
    write_file: Callable[[str, str], Path],
) -> None:
    path = write_file(
        "otto.jsonl",
        '{"session": 5, "events": ['
        '{"aid": 1, "ts": 1659304800000, "type": "clicks"},'
        '{"aid": 2, "ts": 1659304900000, "type": "carts"},'
        '{"aid": 2, "ts": 1659314900000, "type": "orders"},'
        '{"aid": 3, "ts": "noon", "type": "clicks"},'
        '{"aid": 4, "ts": 1659304800000, "type": "wishes"}]}\n'
        "{not json\n"
        '{"events": []}\n'
        "\n",
    )

    dataset = otto.load(path)

    assert [e.event_id for e in dataset.events] == [
        "otto:otto:1:0",
        "otto:otto:1:1",
        "otto:otto:1:2",
    ]
    assert [e.session_id for e in dataset.events] == ["5:1", "5:1", "5:2"]
    assert dataset.summary.unparseable == {
        "invalid_time": 1,
        "invalid_json": 1,
        "missing_session": 1,
    }
    assert dataset.summary.skipped_event_types == {"wishes": 1}


def test_otto_names_truncated_gzip(tmp_path: Path) -> None:
    lines = "".join(
        f'{{"session": {number}, "events": [{{"aid": {number * 7}, '
        f'"ts": 1659304800000, "type": "clicks"}}]}}\n'
        for number in range(5_000)
    )
    path = tmp_path / "otto.jsonl.gz"
    path.write_bytes(gzip.compress(lines.encode())[:2_000])

    with pytest.raises(DatasetFileError) as raised:
        otto.load(path)

    assert str(raised.value).startswith(
        f"dataset file {str(path)!r} cannot be read: the gzip data is truncated ("
    )
