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
# The loggers of the Kafka clients (librdkafka through confluent-kafka, and
# aiokafka under Faust and mode in the feedback worker) and of Faust and mode.
_CLIENT_LOGGERS = ("librdkafka", "aiokafka", "faust", "mode")
# Libraries whose INFO lines mean nothing to an operator. torch 2.13 logs
# cache statistics at INFO on exit, and sets its own logger to WARNING only
# at the end of its import, so a service stopped during that import logs them.
_CHATTY_LOGGERS = ("urllib3", "matplotlib", "torch")


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
    ("after 0ms"), in librdkafka's own counts of suppressed errors and in
    object addresses, as the reconnect lines of one client to one broker do.
    Lines of another logger, or about another broker or partition, are
    another kind. The next record of a kind after
    the interval carries the count of those held back. When no record of
    its kind follows, the count is not reported.

    On a handler, where records of every logger arrive, ``loggers`` limits
    it to the records of the named loggers and their children.

    Args:
        interval_seconds: how long records of a kind are held back after one
            passed.
        clock: returns monotonic seconds; tests inject their own.
        varying: the parts of a message that do not change its kind; by
            default durations, librdkafka's counts of suppressed errors and
            object addresses such as ``0x7f3a2c1d5e80``.
        loggers: the names of the loggers whose records are thinned out; by
            default every record is.
    """

    _VARYING = re.compile(
        r"\d+(?:\.\d+)?\s?m?s\b|\d+ identical error\(s\) suppressed|\b0x[0-9a-f]+\b"
    )
    # Enough for every kind of line a client writes; a flood of new kinds
    # starts the count afresh instead of growing without bound.
    _MAX_KINDS = 1024

    def __init__(
        self,
        interval_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        varying: re.Pattern[str] | None = None,
        loggers: Iterable[str] | None = None,
    ) -> None:
        super().__init__()
        self._interval = interval_seconds
        self._clock = clock
        self._varying = varying or self._VARYING
        self._loggers = None if loggers is None else tuple(loggers)
        # Kind -> (when its last record passed, records held back since).
        self._kinds: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if self._loggers is not None and not any(
            record.name == name or record.name.startswith(f"{name}.")
            for name in self._loggers
        ):
            return True
        message = record.getMessage()
        kind = f"{record.name}:{self._varying.sub('#', message)}"
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


def configure_logging(
    level: str = "INFO",
    *,
    secrets: Iterable[str] = (),
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Send log records at ``level`` and above to stderr, one line each.

    Unless ``level`` is DEBUG, the Kafka clients', Faust's and mode's
    chatter is kept at WARNING, and their repeated lines pass through a
    :class:`RepeatFilter`. The INFO lines of urllib3, matplotlib and torch are
    kept out the same way. Every string in ``secrets`` (see
    :func:`services.common.settings.secret_values`) is replaced by
    ``**********`` in every line.

    Args:
        level: the lowest level written, such as ``INFO``.
        secrets: the exact strings to hide.
        clock: returns monotonic seconds for the :class:`RepeatFilter`; tests
            inject their own.
    """
    logging.basicConfig(
        level=level.upper(), format=_FORMAT, stream=sys.stderr, force=True
    )
    filters: list[logging.Filter] = [SecretMaskingFilter(secrets)]
    if level.upper() != "DEBUG":
        for noisy in (*_CLIENT_LOGGERS, *_CHATTY_LOGGERS):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # During a broker outage each client logs a failed connect every few
        # tens of milliseconds. The filter sits on the handler because a
        # filter on a logger misses the records of its children, such as
        # aiokafka.conn. It comes after the masking, which rewrites messages.
        filters.append(RepeatFilter(clock=clock, loggers=_CLIENT_LOGGERS))
    for handler in logging.getLogger().handlers:
        for log_filter in filters:
            handler.addFilter(log_filter)
