"""Retry opening a topic reader in the background until the topic exists.

A process that starts before ``cartwheel topics create`` has run (in
Kubernetes, before the topics Job has finished) finds its topic missing. A
reader that the process can serve without, such as the API's session follower
and model watcher, calls :func:`retry_until_open` from its own thread instead
of giving up until a restart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from services.common.errors import InfrastructureError, TopicMissingError
from services.common.outage import OutageLog

__all__ = ["MAX_RETRY_SECONDS", "retry_until_open"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 30.0


def retry_until_open(
    open_reader: Callable[[], T],
    stop: threading.Event,
    *,
    reader: str,
    topic: str,
    first_error: Exception,
    first_retry_seconds: float = FIRST_RETRY_SECONDS,
    max_retry_seconds: float = MAX_RETRY_SECONDS,
) -> T | None:
    """Call ``open_reader`` until it returns, doubling the wait after each failure.

    The wait starts at ``first_retry_seconds`` and stops growing at
    ``max_retry_seconds``. A missing topic or an unreachable broker is retried.
    Any other error is raised. The attempts are logged as one outage that
    starts with ``first_error``, which the caller has logged itself (see
    :class:`~services.common.outage.OutageLog`): a WARNING now and then while
    they fail, and an INFO line once the reader is open.

    Returns:
        What ``open_reader`` returned, or None when ``stop`` was set first.
    """
    outage = OutageLog(logger, reader, "topic lookup", context={"topic": topic})
    delay = first_retry_seconds
    outage.failed(first_error, delay, is_logged=True)
    while not stop.wait(delay):
        try:
            opened = open_reader()
        except (TopicMissingError, InfrastructureError) as exc:
            delay = min(delay * 2, max_retry_seconds)
            outage.failed(exc, delay)
            continue
        outage.recovered()
        return opened
    return None
