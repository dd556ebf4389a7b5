"""Read a JSON-lines replay file, plain or gzip, and check it before a replay.

:func:`verify_replay_file` runs before the replay connects to the broker, so
a file that cannot be replayed fails before anything is published. Such
files are empty or blank, gzip files under the wrong name, or binary files
whose first block is not UTF-8 text. :class:`ReplayFileLines` yields the
lines as they are, for validation to judge, except for two things that are
not events: blank lines and a byte order mark at the start of the file.
"""

from __future__ import annotations

import codecs
import gzip
import io
from collections.abc import Iterator
from pathlib import Path

from services.replay.errors import (
    DECODE_ERRORS,
    GZIP_MAGIC,
    ReplayFileError,
    describe_read_error,
)

__all__ = [
    "FIRST_BLOCK_BYTES",
    "ReplayFileLines",
    "blank_file_error",
    "find_binary_content",
    "verify_replay_file",
]

# Errors that reading a replay file raises: I/O errors and broken gzip streams.
_FILE_ERRORS: tuple[type[Exception], ...] = (OSError, *DECODE_ERRORS)

# How much of a file verify_replay_file checks for text: room for four events
# of the largest accepted size (16 KiB each).
FIRST_BLOCK_BYTES = 64 * 1024

# Some Windows tools start a UTF-8 file with U+FEFF, encoded, to mark the
# encoding. It carries no event data, so a replay drops it at the file's start.
_BYTE_ORDER_MARK = codecs.BOM_UTF8


def verify_replay_file(path: Path) -> None:
    """Check that a JSON-lines replay file exists and has text to replay.

    It reads the first block, decompressed for .gz, so three kinds of file
    fail here, before any connection to the broker. A .gz file that is not
    gzip-compressed cannot be read. A gzip-compressed file whose name does
    not end in .gz would be read as text, and each of its lines would become
    a dead letter. So would every line of a binary file, such as an image or
    an archive given by mistake.

    Raises:
        FileNotFoundError: the path does not exist or is a folder.
        ReplayFileError: the file is empty, is gzip-compressed under a name
            without .gz, has a NUL byte or bytes that are not UTF-8 in its
            first block, or that block cannot be read. It is also raised for
            a file that fits in the first block and has only blank lines,
            after a byte order mark if there is one.
    """
    if path.is_dir():
        raise FileNotFoundError(
            f"replay file {str(path)!r} is a folder; expected a file of events"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"replay file {str(path)!r} not found or not a regular file"
        )
    if path.suffix != ".gz":
        with path.open("rb") as raw:
            if raw.read(2) == GZIP_MAGIC:
                raise ReplayFileError(
                    f"replay file {str(path)!r} is gzip-compressed but its name "
                    "does not end in .gz; rename it to end in .gz, or decompress it"
                )
    block = _read_first_block(path)
    if not block:
        raise ReplayFileError(
            f"replay file {str(path)!r} is empty; expected one JSON event per line"
        )
    is_whole_file = len(block) < FIRST_BLOCK_BYTES
    if is_whole_file and not block.removeprefix(_BYTE_ORDER_MARK).strip():
        raise blank_file_error(path)
    fault = find_binary_content(block, is_whole_file=is_whole_file)
    if fault is not None:
        decompressed = " once decompressed" if path.suffix == ".gz" else ""
        raise ReplayFileError(
            f"replay file {str(path)!r} is not text{decompressed}: {fault}; "
            "expected JSON lines (UTF-8 text, one JSON event per line), "
            "gzip-compressed only under a name ending in .gz"
        )


def find_binary_content(block: bytes, *, is_whole_file: bool) -> str | None:
    """Describe the first byte of a file's first block that text cannot contain.

    A binary file, such as an image, an archive or a program, shows itself in
    its first block by one of two faults. One is a NUL byte, which JSON text
    cannot contain unescaped (RFC 8259 section 7). The other is bytes that are
    not UTF-8, the encoding that RFC 8259 section 8.1 requires of JSON
    exchanged between systems.

    Args:
        block: the first bytes of the file, decompressed if it is gzip.
        is_whole_file: the block is the whole file, so a UTF-8 sequence cut
            off at its end is an error rather than the edge of the block.

    Returns:
        None for UTF-8 text without NUL bytes, or the earliest fault, such as
        ``NUL byte at offset 7 (line 1)``.
    """
    nul = block.find(b"\0")
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(block, final=is_whole_file)
    except UnicodeDecodeError as exc:
        if nul == -1 or exc.start < nul:
            return (
                f"byte 0x{block[exc.start]:02x} at {_position(block, exc.start)} "
                "is not UTF-8"
            )
    if nul != -1:
        return f"NUL byte at {_position(block, nul)}"
    return None


def _position(block: bytes, offset: int) -> str:
    line = block.count(b"\n", 0, offset) + 1
    return f"offset {offset} (line {line})"


def blank_file_error(path: Path) -> ReplayFileError:
    """Build the error for a replay file whose every line is blank."""
    return ReplayFileError(
        f"replay file {str(path)!r} has only blank lines; expected one JSON "
        "event per line"
    )


class ReplayFileLines:
    """The non-blank lines of a JSON-lines replay file, gzip or plain.

    Iterating yields (line number, line) pairs, each line without its line
    ending and otherwise as it is, so that validation judges it. Two things
    that are not events never reach validation. A blank line (empty, or only
    ASCII whitespace) is skipped and counted in :attr:`blank_lines`, and the
    numbers of the lines after it stay those of the file. A UTF-8 byte order
    mark at the very start of the file is dropped. Anywhere else it stays in
    its line, so validation rejects that line as invalid JSON.

    Attributes:
        path: the replay file.
        blank_lines: blank lines skipped by the latest iteration so far.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.blank_lines = 0

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        """Yield the (line number, line) pairs, counting line numbers from 1.

        Raises:
            ReplayFileError: the file cannot be read to its end, such as a
                truncated or corrupt gzip file.
        """
        self.blank_lines = 0
        line_number = 0
        try:
            with _open(self.path) as lines:
                for line_number, line in enumerate(lines, start=1):
                    if line_number == 1:
                        line = line.removeprefix(_BYTE_ORDER_MARK)
                    text = line.rstrip(b"\r\n")
                    # b"".isspace() is False, so an empty line needs its own test.
                    if not text or text.isspace():
                        self.blank_lines += 1
                        continue
                    yield line_number, text
        except _FILE_ERRORS as exc:
            raise _unreadable_file_error(self.path, exc, line_number) from exc


def _read_first_block(path: Path) -> bytes:
    """Return the first :data:`FIRST_BLOCK_BYTES` of a replay file, or all of it.

    Raises:
        ReplayFileError: the block cannot be read, such as from a .gz file
            that is not gzip-compressed or is truncated within the block.
    """
    try:
        with _open(path) as stream:
            return stream.read(FIRST_BLOCK_BYTES)
    except _FILE_ERRORS as exc:
        raise _unreadable_file_error(path, exc, line_number=0) from exc


def _open(path: Path) -> io.BufferedIOBase:
    """Open a replay file for reading bytes, decompressed if its name ends in .gz."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return path.open("rb")


def _unreadable_file_error(
    path: Path, exc: Exception, line_number: int
) -> ReplayFileError:
    """Build the error for a replay file that failed after ``line_number`` lines."""
    reason = describe_read_error(exc, path)
    if line_number == 0:
        return ReplayFileError(
            f"replay file {str(path)!r} cannot be read: {reason}; nothing was "
            "published, so fix the file or pass a plain .jsonl file"
        )
    return ReplayFileError(
        f"replay file {str(path)!r} cannot be read after line {line_number}: "
        f"{reason}; the lines up to it were published, so replay only the "
        "lines after it once the file is fixed"
    )
