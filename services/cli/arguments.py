"""Argument types shared by ``cartwheel`` commands.

An option value of the wrong form is a usage error. Checking it in the
argparse ``type`` makes argparse print the usage line and exit with 2, before
the command reads any setting or file, the same way for every command.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "integer_at_least",
    "integer_between",
    "non_empty_path",
    "positive_number",
    "positive_number_at_most",
]

# Python's int() also accepts surrounding spaces, underscores and non-ASCII
# digits, none of which a command-line option should contain.
_PLAIN_INTEGER = re.compile(r"[+-]?[0-9]+")


def integer_at_least(minimum: int) -> Callable[[str], int]:
    """Return an argparse ``type`` that accepts whole numbers of ``minimum`` or more.

    Args:
        minimum: the smallest value accepted.

    Returns:
        A function that parses the option's text, or raises
        ``argparse.ArgumentTypeError`` naming the text and the expected form.
    """
    return _bounded_integer(minimum, None, f"an integer of {minimum} or more")


def integer_between(minimum: int, maximum: int) -> Callable[[str], int]:
    """Return an argparse ``type`` that accepts whole numbers in a closed range.

    Args:
        minimum: the smallest value accepted.
        maximum: the largest value accepted.

    Returns:
        A function that parses the option's text, or raises
        ``argparse.ArgumentTypeError`` naming the text and the expected range.
    """
    return _bounded_integer(minimum, maximum, f"an integer from {minimum} to {maximum}")


def _bounded_integer(
    minimum: int, maximum: int | None, expected: str
) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = None
        if _PLAIN_INTEGER.fullmatch(text) is not None:
            value = int(text)
        if (
            value is None
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


def positive_number(text: str) -> float:
    """Parse a finite number above 0, such as a speed-up factor.

    ``float`` also parses "nan" and "inf", which no factor or rate should be.

    Raises:
        argparse.ArgumentTypeError: the text is not such a number.
    """
    return _bounded_number(text, math.inf, "a finite number above 0")


def positive_number_at_most(maximum: float) -> Callable[[str], float]:
    """Return an argparse ``type`` that accepts numbers above 0 and up to ``maximum``.

    Args:
        maximum: the largest value accepted, such as the longest timeout
            that makes sense.

    Returns:
        A function that parses the option's text, or raises
        ``argparse.ArgumentTypeError`` naming the text and the expected range.
    """
    expected = f"a number above 0 and at most {maximum:g}"

    def parse(text: str) -> float:
        return _bounded_number(text, maximum, expected)

    return parse


def _bounded_number(text: str, maximum: float, expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= maximum):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def non_empty_path(text: str) -> Path:
    """Parse a file or folder path that is not the empty string.

    ``Path("")`` reads as the working directory, so an empty value (an unset
    shell variable, for example) would otherwise name a folder no one gave.

    Raises:
        argparse.ArgumentTypeError: the text is empty.
    """
    if not text:
        raise argparse.ArgumentTypeError("expected a path, got ''")
    return Path(text)
