"""Read a JSON-lines replay file, plain or gzip, and check it before a replay.

:func:`verify_replay_file` runs before the replay connects to the broker, so
a file that cannot be replayed fails before anything is published.
:func:`read_lines` yields the lines as they are, for validation to judge.
"""

from __future__ import annotations

import gzip
from collections.abc import Generator
from pathlib import Path

from services.replay.errors import (
    DECODE_ERRORS,
    GZIP_MAGIC,
    ReplayFileError,
    describe_read_error,
)

__all__ = ["read_lines", "verify_replay_file"]

# Errors that reading a replay file raises: I/O errors and broken gzip streams.
_FILE_ERRORS: tuple[type[Exception], ...] = (OSError, *DECODE_ERRORS)


def verify_replay_file(path: Path) -> None:
    """Check that a JSON-lines replay file exists and has content to replay.

    It reads the first line, so a .gz file that is not gzip-compressed fails
    here, before any connection to the broker. So does a gzip-compressed
    file whose name does not end in .gz: read as text, each of its lines
    would become a dead letter.

    Raises:
        FileNotFoundError: the path does not exist or is a folder.
        ReplayFileError: the file is empty, is gzip-compressed under a name
            without .gz, or its first line cannot be read.
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
    lines = read_lines(path)
    try:
        if next(lines, None) is None:
            raise ReplayFileError(
                f"replay file {str(path)!r} is empty; expected one JSON event per line"
            )
    finally:
        lines.close()


def read_lines(path: Path) -> Generator[tuple[int, bytes], None, None]:
    """Yield (line number, line) pairs of a JSON-lines file, gzip or plain.

    Raises:
        ReplayFileError: the file cannot be read to its end, such as a
            truncated or corrupt gzip file.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    line_number = 0
    try:
        with opener(path, "rb") as lines:
            for line_number, line in enumerate(lines, start=1):
                yield line_number, line.rstrip(b"\r\n")
    except _FILE_ERRORS as exc:
        reason = describe_read_error(exc)
        if line_number == 0:
            raise ReplayFileError(
                f"replay file {str(path)!r} cannot be read: {reason}; nothing was "
                "published, so fix the file or pass a plain .jsonl file"
            ) from exc
        raise ReplayFileError(
            f"replay file {str(path)!r} cannot be read after line {line_number}: "
            f"{reason}; the lines up to it were published, so replay only the "
            "lines after it once the file is fixed"
        ) from exc
