"""verify_replay_file: a replay file is checked before the replay connects."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from services.replay.errors import ReplayFileError
from services.replay.jsonl import verify_replay_file


@pytest.mark.parametrize(
    ("name", "content"),
    [("empty.jsonl", b""), ("empty.jsonl.gz", gzip.compress(b""))],
    ids=["plain", "gzip"],
)
def test_verify_replay_file_rejects_empty(
    tmp_path: Path, name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    with pytest.raises(ReplayFileError) as caught:
        verify_replay_file(path)

    assert str(caught.value) == (
        f"replay file {str(path)!r} is empty; expected one JSON event per line"
    )


def test_verify_replay_file_accepts_blank_line(tmp_path: Path) -> None:
    path = tmp_path / "blank.jsonl"
    path.write_bytes(b"\n")

    verify_replay_file(path)


def test_verify_replay_file_rejects_gzip_without_gz_name(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(gzip.compress(b'{"event_id": "e1"}\n'))

    with pytest.raises(ReplayFileError) as caught:
        verify_replay_file(path)

    assert str(caught.value) == (
        f"replay file {str(path)!r} is gzip-compressed but its name does not "
        "end in .gz; rename it to end in .gz, or decompress it"
    )
