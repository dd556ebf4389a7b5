"""Turn SIGINT and SIGTERM into exceptions, before anything slow is imported.

This module imports nothing but the standard library, so an entry point can
import it and install the handlers within the interpreter's own start-up
time, before it loads the modules that take a second or more.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["Terminated", "honour_interrupts", "sigterm_as_interrupt"]


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM.

    It derives from KeyboardInterrupt, so a command cleans up after SIGTERM
    exactly as after Ctrl-C.
    """


def honour_interrupts() -> None:
    """Let SIGINT interrupt the process even if it started with SIGINT ignored.

    A non-interactive shell starts background jobs with SIGINT ignored, and
    Python then installs no KeyboardInterrupt handler. Each service installs
    its own SIGINT handler once it runs, so without this a SIGINT during
    start-up would be lost while a later one stops the service. Only the main
    thread can set signal handlers; elsewhere nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` inside the ``with`` block.

    Only the main thread can set signal handlers; elsewhere nothing changes.
    Services that stop gracefully install their own handler while they run.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
