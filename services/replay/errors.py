"""Errors raised by the replay tool and its dataset adapters."""

from __future__ import annotations

import gzip
import zlib

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


def describe_read_error(exc: Exception) -> str:
    """Say in one clause why a file could not be read to its end.

    Args:
        exc: one of :data:`DECODE_ERRORS`, or another ``OSError``.

    Returns:
        A clause such as ``the gzip data is truncated (...)``, with the
        original message in the parentheses.
    """
    if isinstance(exc, gzip.BadGzipFile) and str(exc).startswith("Not a gzipped"):
        return f"the name ends in .gz but the file is not gzip-compressed ({exc})"
    if isinstance(exc, EOFError):
        return f"the gzip data is truncated ({exc})"
    if isinstance(exc, gzip.BadGzipFile | zlib.error):
        return f"the gzip data is corrupt ({exc})"
    if isinstance(exc, UnicodeDecodeError):
        byte = exc.object[exc.start : exc.start + 1]
        return f"the file is not UTF-8 text (byte 0x{byte.hex()} cannot be decoded)"
    return str(exc)
