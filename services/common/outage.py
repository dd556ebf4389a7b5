"""Log a retry loop's failed attempts as outages, in a bounded number of lines.

A loop that retries Redis or the broker until they respond again would write
a line per attempt for as long as they are away. An :class:`OutageLog` turns the
attempts of one outage into three kinds of line instead:

- a WARNING when the first attempt fails: ``<subject> failed, retrying
  <operation>``, with the error and the wait before the next attempt;
- a WARNING ``<subject> still failing, retrying <operation>`` once the
  outage has lasted 1 minute, then 2, 4, 8, 16, 32 and 64 minutes, and every
  hour after that, with the latest error and the attempts so far. The
  attempts in between are logged at DEBUG;
- an INFO ``<subject> recovered, <operation> succeeded`` at the first
  attempt that succeeds, with how long the outage lasted and how many
  attempts failed.

A caller that does not retry, such as a request handler that answers 503
while Redis is away, names what its requests get instead of ``retrying
<operation>`` and passes no wait: ``redis failed, slate requests answer 503``.

Counting every attempt stays the job of the caller's retry metric.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

__all__ = ["FIRST_REMINDER_SECONDS", "MAX_REMINDER_GAP_SECONDS", "OutageLog"]

# The first "still failing" line comes after a minute. Each gap between those
# lines is as long as the outage was at the previous one, up to an hour.
FIRST_REMINDER_SECONDS = 60.0
MAX_REMINDER_GAP_SECONDS = 3600.0


class OutageLog:
    """The log lines of one retry loop's outages, or of one request path's.

    Not thread-safe: each retry loop keeps its own, and request handlers
    share one only from a single thread, such as their event loop.

    Args:
        logger: the logger of the module that retries.
        subject: what fails, at the start of every line, such as ``redis``.
        operation: what is retried, such as ``batch``, or what a request
            does, such as ``slate request``. The recovery line reports that
            it succeeded.
        context: ``key=value`` pairs that every line carries after the
            phrase, such as the topic or the Redis key.
        consequence: what goes on while the subject fails, the phrase after
            the comma of each failure line; ``retrying <operation>`` when
            None. A caller that does not retry says what happens instead,
            such as ``slate requests answer 503``.
        clock: monotonic seconds; tests inject their own.
    """

    def __init__(
        self,
        logger: logging.Logger,
        subject: str,
        operation: str,
        *,
        context: Mapping[str, object] | None = None,
        consequence: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._subject = subject
        self._operation = operation
        self._consequence = consequence or f"retrying {operation}"
        self._context = "".join(f" {k}={v}" for k, v in (context or {}).items())
        self._clock = clock
        self._started_at: float | None = None
        self._reminder_at = 0.0
        self._failed_attempts = 0

    @property
    def is_failing(self) -> bool:
        """True from a failed attempt until the next one that succeeds."""
        return self._started_at is not None

    @property
    def failed_attempts(self) -> int:
        """The attempts that failed in the current outage, 0 outside one."""
        return self._failed_attempts

    def failed(
        self,
        error: object,
        delay_seconds: float | None = None,
        *,
        is_logged: bool = False,
    ) -> None:
        """Record a failed attempt, logging it when it starts an outage or is due.

        The attempts in between are logged at DEBUG.

        Args:
            error: what the attempt raised.
            delay_seconds: the wait before the next attempt; None for a
                caller that does not retry, whose lines then have no wait.
            is_logged: the caller has logged this failure in its own words,
                so an outage that it starts adds no line of its own.
        """
        now = self._clock()
        self._failed_attempts += 1
        delay = "" if delay_seconds is None else f" delay_seconds={delay_seconds:.2f}"
        if self._started_at is None:
            self._started_at = now
            self._reminder_at = now + FIRST_REMINDER_SECONDS
            if not is_logged:
                self._logger.warning(
                    "%s failed, %s%s%s error=%s",
                    self._subject,
                    self._consequence,
                    self._context,
                    delay,
                    error,
                )
        elif now >= self._reminder_at:
            self._remind(now, self._started_at, error, delay)
        else:
            self._logger.debug(
                "%s failed again, %s%s failed_attempts=%d%s error=%s",
                self._subject,
                self._consequence,
                self._context,
                self._failed_attempts,
                delay,
                error,
            )

    def _remind(self, now: float, started_at: float, error: object, delay: str) -> None:
        # An attempt may come after several reminders fell due; one line
        # covers them, and the next is due on the schedule, not after it.
        while self._reminder_at <= now:
            lasted = self._reminder_at - started_at
            self._reminder_at += min(lasted, MAX_REMINDER_GAP_SECONDS)
        self._logger.warning(
            "%s still failing, %s%s failing_seconds=%.1f failed_attempts=%d%s error=%s",
            self._subject,
            self._consequence,
            self._context,
            now - started_at,
            self._failed_attempts,
            delay,
            error,
        )

    def recovered(self) -> None:
        """Record an attempt that succeeded, logging the end of an outage if any."""
        if self._started_at is None:
            return
        self._logger.info(
            "%s recovered, %s succeeded%s failing_seconds=%.1f failed_attempts=%d",
            self._subject,
            self._operation,
            self._context,
            self._clock() - self._started_at,
            self._failed_attempts,
        )
        self._started_at = None
        self._failed_attempts = 0
