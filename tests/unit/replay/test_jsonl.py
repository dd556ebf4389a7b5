"""Replay files: what verify_replay_file rejects before the replay connects,
and which lines ReplayFileLines passes on to validation."""

from __future__ import annotations

import codecs
import gzip
import io
import random
import sys
import zipfile
from pathlib import Path

import pytest

from services.replay.errors import ReplayFileError
from services.replay.jsonl import (
    FIRST_BLOCK_BYTES,
    ReplayFileLines,
    find_binary_content,
    verify_replay_file,
)

# The signature and the start of the header chunk of every PNG image.
PNG_START = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
BOM = codecs.BOM_UTF8


def _executable_start() -> bytes:
    with Path(sys.executable).open("rb") as program:
        return program.read(4096)


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


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("blank.jsonl", b"\n"),
        ("spaces.jsonl", b"  \r\n\t\n \n"),
        ("bom.jsonl", BOM),
        ("bom-blank.jsonl", BOM + b"\r\n\n"),
        ("blank.jsonl.gz", gzip.compress(b"\n\n")),
    ],
    ids=["newline", "whitespace", "bom", "bom-and-newlines", "gzip"],
)
def test_verify_replay_file_rejects_blank(
    tmp_path: Path, name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    with pytest.raises(ReplayFileError) as caught:
        verify_replay_file(path)

    assert str(caught.value) == (
        f"replay file {str(path)!r} has only blank lines; expected one JSON "
        "event per line"
    )


def test_verify_replay_file_accepts_blank_first_block(tmp_path: Path) -> None:
    path = tmp_path / "late.jsonl"
    path.write_bytes(b"\n" * FIRST_BLOCK_BYTES + b'{"event_id": "e1"}\n')

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


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (b'{"a": 1}\n{"a": \x002}\n', "NUL byte at offset 15 (line 2)"),
        (b'{"a": "caf\xe9"}\n', "byte 0xe9 at offset 10 (line 1) is not UTF-8"),
        (PNG_START, "byte 0x89 at offset 0 (line 1) is not UTF-8"),
        (b"\x00\x89", "NUL byte at offset 0 (line 1)"),
        ("{}\né".encode()[:-1], "byte 0xc3 at offset 3 (line 2) is not UTF-8"),
    ],
    ids=["nul", "latin-1", "png", "nul-first", "cut-at-end"],
)
def test_find_binary_content_names_first_fault(block: bytes, expected: str) -> None:
    assert find_binary_content(block, is_whole_file=True) == expected


def test_find_binary_content_accepts_utf8_text() -> None:
    block = '{"brand": "Café", "page": "/søk"}\n'.encode()

    assert find_binary_content(block, is_whole_file=True) is None


def test_find_binary_content_accepts_cut_character() -> None:
    block = "{}\né".encode()[:-1]

    assert find_binary_content(block, is_whole_file=False) is None


def _zip_archive() -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as writer:
        writer.writestr("events.jsonl", '{"event_id": "e1"}\n')
    return archive.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "fault"),
    [
        ("image.png", PNG_START, ": byte 0x89 at offset 0 (line 1) is not UTF-8;"),
        ("events.zip", _zip_archive(), ": NUL byte at offset "),
        ("program", _executable_start(), ": NUL byte at offset "),
        ("random.jsonl", random.Random(7).randbytes(4096), " is not UTF-8;"),
        (
            "program.jsonl.gz",
            gzip.compress(_executable_start()),
            " once decompressed: NUL byte at offset ",
        ),
    ],
    ids=["png", "zip", "executable", "random", "gzip-executable"],
)
def test_verify_replay_file_rejects_binary_file(
    tmp_path: Path, name: str, content: bytes, fault: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    with pytest.raises(ReplayFileError) as caught:
        verify_replay_file(path)

    message = str(caught.value)
    assert message.startswith(f"replay file {str(path)!r} is not text")
    assert fault in message
    assert message.endswith(
        "; expected JSON lines (UTF-8 text, one JSON event per line), "
        "gzip-compressed only under a name ending in .gz"
    )


def test_verify_replay_file_accepts_cut_character(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"a" * (FIRST_BLOCK_BYTES - 1) + "é\n".encode())

    verify_replay_file(path)


def test_verify_replay_file_rejects_truncated_gzip(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"event_id": "e1"}\n' * 10)[:-12])

    with pytest.raises(ReplayFileError) as caught:
        verify_replay_file(path)

    message = str(caught.value)
    assert message.startswith(f"replay file {str(path)!r} cannot be read: ")
    assert "the gzip data is truncated" in message
    assert "nothing was published" in message


def test_verify_replay_file_reports_bytes_after_gzip_data(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl.gz"
    compressed = gzip.compress(b'{"event_id": "e1"}\n')
    path.write_bytes(compressed + b"garbage")

    with pytest.raises(ReplayFileError) as caught:
        verify_replay_file(path)

    message = str(caught.value)
    assert message.startswith(f"replay file {str(path)!r} cannot be read: ")
    assert (
        f"the gzip data takes the first {len(compressed)} bytes, and the 7 bytes "
        "after them are not gzip (they start with b'garbage')"
    ) in message
    assert "not gzip-compressed" not in message
    assert "nothing was published" in message


def _read(path: Path, content: bytes) -> tuple[list[tuple[int, bytes]], int]:
    path.write_bytes(content)
    lines = ReplayFileLines(path)
    return list(lines), lines.blank_lines


def test_replay_file_lines_skip_blank_lines_keeping_line_numbers(
    tmp_path: Path,
) -> None:
    content = b'{"a": 1}\n\n   \n\t\r\n{"b": 2}\r\n\n'

    lines, blank_lines = _read(tmp_path / "events.jsonl", content)

    assert lines == [(1, b'{"a": 1}'), (5, b'{"b": 2}')]
    assert blank_lines == 4


def test_replay_file_lines_keep_line_of_non_ascii_space(tmp_path: Path) -> None:
    no_break_space = "\u00a0".encode()

    lines, blank_lines = _read(tmp_path / "events.jsonl", no_break_space + b"\n")

    assert lines == [(1, no_break_space)]
    assert blank_lines == 0


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("events.jsonl", BOM + b'{"a": 1}\n{"b": 2}\n'),
        ("events.jsonl.gz", gzip.compress(BOM + b'{"a": 1}\n{"b": 2}\n')),
    ],
    ids=["plain", "gzip"],
)
def test_replay_file_lines_drop_byte_order_mark_at_start(
    tmp_path: Path, name: str, content: bytes
) -> None:
    lines, _ = _read(tmp_path / name, content)

    assert lines == [(1, b'{"a": 1}'), (2, b'{"b": 2}')]


def test_replay_file_lines_skip_first_line_of_only_byte_order_mark(
    tmp_path: Path,
) -> None:
    lines, blank_lines = _read(tmp_path / "events.jsonl", BOM + b'\r\n{"a": 1}\n')

    assert lines == [(2, b'{"a": 1}')]
    assert blank_lines == 1


@pytest.mark.parametrize(
    "content",
    [b'{"a": 1}\n' + BOM + b'{"b": 2}\n', b"\n" + BOM + b'{"b": 2}\n'],
    ids=["after-event", "after-blank-line"],
)
def test_replay_file_lines_keep_byte_order_mark_after_start(
    tmp_path: Path, content: bytes
) -> None:
    lines, _ = _read(tmp_path / "events.jsonl", content)

    assert lines[-1] == (2, BOM + b'{"b": 2}')


def test_replay_file_lines_count_blank_lines_of_latest_iteration(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'\n{"a": 1}\n')
    lines = ReplayFileLines(path)
    list(lines)

    second = list(lines)

    assert second == [(2, b'{"a": 1}')]
    assert lines.blank_lines == 1


def test_replay_file_lines_name_last_line_read_when_gzip_is_truncated(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl.gz"
    content = b"\n".join([b'{"a": 1}', b"", b'{"b": 2}', b"x" * 100_000])
    path.write_bytes(gzip.compress(content, compresslevel=0)[:-50_000])
    lines = ReplayFileLines(path)
    read = []

    with pytest.raises(ReplayFileError) as caught:
        for pair in lines:
            read.append(pair)

    assert read == [(1, b'{"a": 1}'), (3, b'{"b": 2}')]
    assert "cannot be read after line 3: the gzip data is truncated" in str(
        caught.value
    )


def test_replay_file_lines_read_members_before_junk(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl.gz"
    # Two members with the zero padding gzip readers skip, then other bytes.
    gzip_data = (
        gzip.compress(b'{"a": 1}\n')
        + b"\0\0"
        + gzip.compress(b'{"b": 2}\n' + b"x" * FIRST_BLOCK_BYTES)
        + b"\0"
    )
    path.write_bytes(gzip_data + b"junk")
    lines = ReplayFileLines(path)
    read = []

    with pytest.raises(ReplayFileError) as caught:
        for pair in lines:
            read.append(pair)

    assert [number for number, _ in read] == [1, 2]
    assert (
        f"cannot be read after line 2: the gzip data takes the first "
        f"{len(gzip_data)} bytes, and the 4 bytes after them are not gzip"
    ) in str(caught.value)
