"""Checks of the constructor and method arguments of the client library.

confluent-kafka reads a negative or NaN timeout as "wait for ever" and
reports a setting out of librdkafka's range as a bare KafkaException, so the
client checks its arguments first and names the argument in a ValueError.
"""

from __future__ import annotations

import math

__all__ = ["require_int", "require_timeout"]


def require_int(
    name: str, value: int, low: int, high: int | None, expected: str
) -> None:
    """Raise ValueError unless ``value`` is an int from ``low`` to ``high``."""
    # A bool is an int to Python, and a float such as nan or 1.5 passes a
    # range check, so the type is checked first.
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if not is_int or value < low or (high is not None and value > high):
        raise ValueError(f"{name}={value!r}; expected {expected}")


def require_timeout(
    name: str, seconds: float, *, is_zero_allowed: bool = True
) -> float:
    """Return ``seconds``, or raise ValueError when it is not a wait's length."""
    # A bool or a string is a caller's mistake, not a length.
    is_number = isinstance(seconds, int | float) and not isinstance(seconds, bool)
    is_length = is_number and math.isfinite(seconds)
    if not (is_length and (seconds >= 0 if is_zero_allowed else seconds > 0)):
        expected = "0 or more" if is_zero_allowed else "above 0"
        raise ValueError(
            f"{name}={seconds!r}; expected a finite number of seconds, {expected}"
        )
    return seconds
