"""Checks of the constructor and method arguments of the client library.

confluent-kafka reads a negative or NaN timeout as "wait for ever". A timeout
over librdkafka's range fails as if no broker responded, and a setting out of
that range is a bare KafkaException. So the client checks its arguments first
and names the argument in a ValueError.
"""

from __future__ import annotations

__all__ = ["MAX_TIMEOUT_SECONDS", "require_int", "require_timeout"]

# librdkafka keeps its timeouts in milliseconds in a signed 32-bit int, whose
# max of 2147483647 ms is 2147483.647 s.
MAX_TIMEOUT_SECONDS = 2_147_483


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
    # A bool or a string is a caller's mistake, not a length. NaN fails every
    # comparison, and an int is compared as is, since 10**400 has no float.
    is_number = isinstance(seconds, int | float) and not isinstance(seconds, bool)
    is_above_low = is_number and (seconds >= 0 if is_zero_allowed else seconds > 0)
    if not (is_above_low and seconds <= MAX_TIMEOUT_SECONDS):
        low = "0 or more" if is_zero_allowed else "above 0"
        raise ValueError(
            f"{name}={seconds!r}; expected a finite number of seconds, {low} and "
            f"at most {MAX_TIMEOUT_SECONDS}, the range that librdkafka accepts"
        )
    return seconds
