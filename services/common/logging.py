"""Logging set-up for every process, called once from ``__main__``."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable, Iterable

__all__ = ["RepeatFilter", "SecretMaskingFilter", "configure_logging"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_MASK = "**********"


class SecretMaskingFilter(logging.Filter):
    """Replace known secret strings in a record's formatted message.

    Args:
        secrets: the exact strings to hide, such as passwords from settings.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is hidden whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        masked = message
        for secret in self._secrets:
            masked = masked.replace(secret, _MASK)
        if masked != message:
            record.msg = masked
            record.args = None
        return True


class RepeatFilter(logging.Filter):
    """Pass one record of each kind per interval and count the ones held back.

    Records are of one kind when their messages differ only in durations
    ("after 0ms") and in librdkafka's own counts of suppressed errors, as the
    reconnect lines of one client to one broker do. Lines about another
    broker or partition are another kind. The next record of a kind after
    the interval carries the count of those held back. When no record of
    its kind follows, the count is not reported.

    Args:
        interval_seconds: how long records of a kind are held back after one
            passed.
        clock: returns monotonic seconds; tests inject their own.
        varying: the parts of a message that do not change its kind; by
            default durations and librdkafka's counts of suppressed errors.
    """

    _VARYING = re.compile(r"\d+(?:\.\d+)?\s?m?s\b|\d+ identical error\(s\) suppressed")
    # Enough for every kind of line a client writes; a flood of new kinds
    # starts the count afresh instead of growing without bound.
    _MAX_KINDS = 1024

    def __init__(
        self,
        interval_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        varying: re.Pattern[str] | None = None,
    ) -> None:
        super().__init__()
        self._interval = interval_seconds
        self._clock = clock
        self._varying = varying or self._VARYING
        # Kind -> (when its last record passed, records held back since).
        self._kinds: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        kind = self._varying.sub("#", message)
        now = self._clock()
        passed = self._kinds.get(kind)
        if passed is not None and now - passed[0] < self._interval:
            self._kinds[kind] = (passed[0], passed[1] + 1)
            return False
        if len(self._kinds) >= self._MAX_KINDS:
            self._kinds.clear()
        self._kinds[kind] = (now, 0)
        if passed is not None and passed[1]:
            record.msg = (
                f"{message} ({passed[1]} similar line(s) held back in the "
                f"last {now - passed[0]:.0f} s)"
            )
            record.args = None
        return True


def configure_logging(level: str = "INFO", *, secrets: Iterable[str] = ()) -> None:
    """Send log records at ``level`` and above to stderr, one line each.

    librdkafka's and Faust's chatter is kept at WARNING unless ``level`` is
    DEBUG, and librdkafka's lines pass through a :class:`RepeatFilter`.
    Every string in ``secrets`` (see
    :func:`services.common.settings.secret_values`) is replaced by
    ``**********`` in every line.
    """
    logging.basicConfig(
        level=level.upper(), format=_FORMAT, stream=sys.stderr, force=True
    )
    masking = SecretMaskingFilter(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(masking)
    if level.upper() != "DEBUG":
        for noisy in (
            "faust",
            "mode",
            "aiokafka",
            "urllib3",
            "matplotlib",
            "librdkafka",
        ):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # During a broker outage each client logs a failed connect every few
        # tens of milliseconds.
        librdkafka = logging.getLogger("librdkafka")
        if not any(isinstance(f, RepeatFilter) for f in librdkafka.filters):
            librdkafka.addFilter(RepeatFilter())
