"""Shutdown handling shared by the long-running services."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from types import FrameType

__all__ = ["stop_on_signals"]

logger = logging.getLogger(__name__)


def stop_on_signals(stop: Callable[[], None]) -> None:
    """Call ``stop`` on SIGINT or SIGTERM, logging which signal arrived.

    ``stop`` should only ask the service's loop to finish, because it runs in
    the signal handler on the main thread.
    """

    def _handle(signum: int, frame: FrameType | None) -> None:
        logger.info("stop requested signal=%s", signal.Signals(signum).name)
        stop()

    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)
