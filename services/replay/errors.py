"""Errors raised by the replay tool and its dataset adapters."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from schemas.errors import CartwheelError

__all__ = [
    "DECODE_ERRORS",
    "DatasetFileError",
    "DatasetUnavailableError",
    "GZIP_MAGIC",
    "ReplayDeliveryError",
    "ReplayFileError",
    "UnknownDatasetError",
    "describe_read_error",
]

# The first two bytes of every gzip file.
GZIP_MAGIC = b"\x1f\x8b"

# Bytes read at a time while looking for the end of a file's gzip data.
# Deflate data decompresses to at most 1032 times its size (zlib's technical
# details, https://zlib.net/zlib_tech.html), so a block gives at most 17 MB.
_SCAN_BYTES = 16 * 1024

# Errors that decoding a file's bytes raises part-way through: a broken gzip
# stream (a file that is not gzip, truncated or corrupt) or bytes that are
# not UTF-8.
DECODE_ERRORS: tuple[type[Exception], ...] = (
    gzip.BadGzipFile,
    EOFError,
    zlib.error,
    UnicodeDecodeError,
)


class DatasetFileError(CartwheelError):
    """Raised when a dataset file or folder is missing, has an unexpected layout,
    or contains no event of the dataset it was read as."""


class UnknownDatasetError(CartwheelError):
    """Raised when a dataset name is not in the registry."""


class DatasetUnavailableError(CartwheelError):
    """Raised for a registered dataset that contains no events to replay."""


class ReplayDeliveryError(CartwheelError):
    """Raised when the broker did not acknowledge every replayed message."""


class ReplayFileError(CartwheelError):
    """Raised when a JSON-lines replay file is empty or blank, is not UTF-8
    text, cannot be read to its end, or has no line that is a valid event."""


def describe_read_error(exc: Exception, path: Path) -> str:
    """Say in one clause why a file could not be read to its end.

    Args:
        exc: one of :data:`DECODE_ERRORS`, or another ``OSError``.
        path: the file, read again to locate bytes that follow its gzip data.

    Returns:
        A clause such as ``the gzip data is truncated (...)``, with the
        original message in the parentheses.
    """
    if isinstance(exc, gzip.BadGzipFile) and str(exc).startswith("Not a gzipped"):
        trailing = _describe_trailing_bytes(path)
        if trailing is not None:
            return trailing
        return f"the name ends in .gz but the file is not gzip-compressed ({exc})"
    if isinstance(exc, EOFError):
        return f"the gzip data is truncated ({exc})"
    if isinstance(exc, gzip.BadGzipFile | zlib.error):
        return f"the gzip data is corrupt ({exc})"
    if isinstance(exc, UnicodeDecodeError):
        byte = exc.object[exc.start : exc.start + 1]
        return f"the file is not UTF-8 text (byte 0x{byte.hex()} cannot be decoded)"
    return str(exc)


def _describe_trailing_bytes(path: Path) -> str | None:
    """Describe the bytes after a gzip file's data.

    Returns None for a file that is not gzip or has no such bytes.
    Python's gzip reader raises "Not a gzipped file" for a file that is not
    gzip, and also for bytes after the last member of a gzip file. Only a
    gzip file starts with the gzip magic.
    """
    try:
        with path.open("rb") as raw:
            if raw.read(len(GZIP_MAGIC)) != GZIP_MAGIC:
                return None
            end = _find_gzip_end(path)
            raw.seek(end)
            start = raw.read(8)
            size = path.stat().st_size
    except OSError:
        return None
    if not start:
        return None
    return (
        f"the gzip data takes the first {end} bytes, and the {size - end} bytes "
        f"after them are not gzip (they start with {start!r})"
    )


def _find_gzip_end(path: Path) -> int:
    """Return the offset where the complete gzip members at a file's start end.

    Zero bytes after a member count as part of the gzip data, since gzip
    readers skip them.

    Raises:
        OSError: the file cannot be read.
    """
    end = position = 0
    decompressor = zlib.decompressobj(wbits=31)
    is_member_start = True
    with path.open("rb") as raw:
        while block := raw.read(_SCAN_BYTES):
            while block:
                if is_member_start and end > 0:
                    padding = len(block) - len(block.lstrip(b"\0"))
                    block = block[padding:]
                    position += padding
                    end = position
                    if not block:
                        break
                try:
                    decompressor.decompress(block)
                except zlib.error:
                    return end
                is_member_start = False
                if not decompressor.eof:
                    position += len(block)
                    break
                # The member ends within this block, and the next one may
                # start in the bytes the decompressor did not use.
                rest = decompressor.unused_data
                position += len(block) - len(rest)
                end = position
                block = rest
                decompressor = zlib.decompressobj(wbits=31)
                is_member_start = True
    return end
