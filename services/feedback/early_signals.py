"""Note SIGTERM and SIGINT while the feedback worker's process loads its modules.

Importing Faust, confluent-kafka, pydantic and the worker's own modules takes
about half a second, more on a busy machine. Until the worker's
own handler is installed, a stop signal would take its default action: status
143 for SIGTERM, with nothing logged. :class:`EarlySignals` is installed first
and only remembers the signal, and the worker's handler then acts on it as if
it had just arrived. This module and the package's ``__init__`` import nothing
but the standard library, so the handler is in place within the interpreter's
own start-up time.
"""

from __future__ import annotations

import signal
from types import FrameType

__all__ = ["EarlySignals"]


class EarlySignals:
    """Remember the first SIGTERM or SIGINT until another handler replaces this one."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None

    def install(self) -> None:
        """Handle SIGTERM and SIGINT by remembering them (main thread only)."""
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop_signal, self._note)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(signum)
