"""Blocking calls run on threads of their own, each waited for at most a timeout.

Python cannot stop a thread, so a call still running at its timeout is left
behind: its thread runs on until the call returns (a read on a hung network
volume may never return), and ``forget_returned`` hands back its outcome
afterwards. Only a fixed number of such blocked threads is allowed. Before each
call the caller checks ``can_start()``, and while it is False the caller waits
for a blocked call to return.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["BlockedCall", "BoundedCalls"]

T = TypeVar("T")


@dataclass(frozen=True)
class BlockedCall:
    """A call that outlived its timeout. Its thread may still be running.

    Attributes:
        name: the name the caller gave the call.
        future: done once the call returned a value or raised an Exception.
        thread: the thread it runs on.
        started: ``time.monotonic()`` when it started.
    """

    name: str
    future: Future[Any]
    thread: threading.Thread
    started: float


class BoundedCalls:
    """Calls run on daemon threads, each waited for until a timeout.

    Use it from one thread only.

    Args:
        timeout_seconds: seconds to wait for one call.
        max_blocked: how many calls left behind may still run at once.
        thread_name_prefix: threads are named ``<prefix>-<call name>``.
    """

    def __init__(
        self, timeout_seconds: float, max_blocked: int, thread_name_prefix: str
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError(
                f"timeout_seconds={timeout_seconds}; expected a positive number"
            )
        if max_blocked < 1:
            raise ValueError(f"max_blocked={max_blocked}; expected at least 1")
        self.timeout_seconds = timeout_seconds
        self.max_blocked = max_blocked
        self._thread_name_prefix = thread_name_prefix
        self._blocked: list[BlockedCall] = []

    @property
    def blocked(self) -> int:
        """Calls left behind whose threads were still running at the last check."""
        return len(self._blocked)

    def can_start(self) -> bool:
        """Return whether a call may start: fewer than ``max_blocked`` are blocked."""
        return len(self._blocked) < self.max_blocked

    def run(self, call: Callable[[], T], name: str) -> Future[T] | None:
        """Run ``call`` on a thread of its own and wait at most the timeout.

        Returns:
            The finished call (``result()`` returns its value or raises its
            error), or None when it is still running. It then counts as
            blocked until ``forget_returned`` finds its thread ended and returns
            it.
        """
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(call())
            except Exception as exc:
                # Handed over to the caller's thread, which reports it.
                future.set_exception(exc)

        thread = threading.Thread(
            target=run, name=f"{self._thread_name_prefix}-{name}", daemon=True
        )
        started = time.monotonic()
        thread.start()
        done, _ = wait([future], timeout=self.timeout_seconds)
        if done:
            return future
        self._blocked.append(BlockedCall(name, future, thread, started))
        return None

    def forget_returned(self) -> list[BlockedCall]:
        """Stop counting the blocked calls whose threads ended, and return them."""
        running: list[BlockedCall] = []
        returned: list[BlockedCall] = []
        for call in self._blocked:
            (running if call.thread.is_alive() else returned).append(call)
        self._blocked = running
        return returned
