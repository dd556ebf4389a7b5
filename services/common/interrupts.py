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

__all__ = [
    "Terminated",
    "honour_interrupts",
    "record_stop_signal",
    "stop_signals_as_interrupts",
]


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
def stop_signals_as_interrupts() -> Iterator[None]:
    """Raise the first SIGINT or SIGTERM inside the ``with`` block, once.

    SIGTERM raises :class:`Terminated` and SIGINT raises KeyboardInterrupt,
    unless SIGINT is ignored. A signal after the first, or after one that a
    service recorded with :func:`record_stop_signal`, is ignored, so it can
    neither cut the stop short nor kill the process before it exits with its
    status. After a stop signal both signals stay ignored when the block
    ends, because the process is then exiting, and CPython resets Python
    handlers to the default action once the exit functions have run.
    Without one, the previous handlers come back.

    Only the main thread can set signal handlers; elsewhere nothing changes.
    Services that stop gracefully install their own handlers while they run.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()

    def _raise_once(signum: int, frame: FrameType | None) -> None:
        if _received:
            return
        record_stop_signal(signum)
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt

    signals = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signals.append(signal.SIGINT)
    previous = {signum: signal.signal(signum, _raise_once) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_IGN if _received else handler)


def record_stop_signal(signum: int) -> None:
    """Record that the process was asked to stop by signal ``signum``.

    A service's own signal handler calls this, so that a repeated signal
    that comes after the service restored the previous handlers is ignored
    by :func:`stop_signals_as_interrupts` rather than raised.
    """
    _received.append(signum)


# The stop signals received since stop_signals_as_interrupts was entered.
_received: list[int] = []
