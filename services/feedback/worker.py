"""The feedback app's Faust worker, with a deadline on stopping.

Faust stops its consumer in a thread of its own. When the broker accepts
connections but never responds (a frozen broker process), that thread waits
on the broker forever. Faust gives up on it after 60 s, and the process still
stays up, because the interpreter waits for the thread before it exits. So
SIGTERM or SIGINT also starts a countdown of
``CARTWHEEL_FEEDBACK_STOP_TIMEOUT_SECONDS``. A worker still running when it
ends logs one ERROR line and exits with status 2, the status of other broker
and Redis errors, without a traceback.

Before Faust runs, the start-up checks of the topics and Redis wait in a
thread of their own (:func:`run_start_up`), so SIGTERM or SIGINT stops the
start-up at once even while the broker does not respond. The process then
ends with status 0, as after a clean stop, and the countdown started by the
signal bounds the rest of the exit in the same way.

What a forced stop costs: nothing counted in Redis is lost, since each
message is applied atomically and remembered by id. Messages applied after the
last offset commit that succeeded are read again by the next worker: those of
the last ``CARTWHEEL_FEEDBACK_COMMIT_INTERVAL_SECONDS`` before the broker
stopped responding, and any applied afterwards from data already fetched. The
duplicate check drops each of them that is still among its user's recent ids;
older ones are counted again (L-72). The worker does not leave its consumer
group, so its partitions move to another worker after the session timeout
(3 s), and the process's Prometheus counters end with it.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

import faust

from services.common.entrypoint import ENVIRONMENT_ERROR_STATUS

__all__ = ["FeedbackWorker", "StartUpStopped", "StopDeadline", "run_start_up"]

logger = logging.getLogger(__name__)

ResultT = TypeVar("ResultT")


class StopDeadline:
    """End the process when a stop takes longer than a timeout.

    Args:
        timeout_seconds: how long a stop may take once :meth:`start` is called.
        exit_now: ends the process at once with the given status.
    """

    def __init__(
        self,
        timeout_seconds: float,
        *,
        exit_now: Callable[[int], object] = os._exit,
    ) -> None:
        self._timeout_seconds = timeout_seconds
        self._exit_now = exit_now
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def start(self, reason: str) -> None:
        """Start the countdown unless it already runs, keeping the first one.

        Args:
            reason: the signal that requested the stop, such as ``SIGTERM``,
                for the log line.
        """
        with self._lock:
            if self._timer is not None:
                return
            # A daemon thread, so that it never delays an exit by itself.
            self._timer = threading.Timer(
                self._timeout_seconds, self._give_up, args=(reason,)
            )
            self._timer.daemon = True
            self._timer.name = "feedback-stop-deadline"
            self._timer.start()

    def cancel(self) -> None:
        """Stop the countdown, if one runs."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()

    def _give_up(self, reason: str) -> None:
        logger.error(
            "feedback app did not stop in time, gave up waiting for the broker "
            "and exiting without committing offsets reason=%s "
            "stop_timeout_seconds=%s exit_status=%d",
            reason,
            self._timeout_seconds,
            ENVIRONMENT_ERROR_STATUS,
        )
        # os._exit skips the handlers' own flush at exit.
        logging.shutdown()
        self._exit_now(ENVIRONMENT_ERROR_STATUS)


class FeedbackWorker(faust.Worker):
    """A Faust worker that starts a :class:`StopDeadline` on SIGTERM or SIGINT.

    Args:
        app: the feedback app.
        stop_deadline: started when a stop signal arrives.
        **kwargs: passed to :class:`faust.Worker`.
    """

    def __init__(
        self, app: faust.App, *, stop_deadline: StopDeadline, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self._stop_deadline = stop_deadline

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        # mode-streaming 0.7 routes SIGTERM and SIGINT (and SIGTERM on
        # Windows) through this method; a unit test checks that it still does.
        self._stop_deadline.start(signal.name)
        super()._schedule_shutdown(signal)


class StartUpStopped(Exception):
    """Raised by :func:`run_start_up` when SIGTERM or SIGINT arrives during start-up.

    Args:
        reason: the signal's name, such as ``SIGTERM``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"stop requested during start-up by {reason}")
        self.reason = reason


def run_start_up(
    start_up: Callable[[], ResultT], stop_deadline: StopDeadline
) -> ResultT:
    """Run ``start_up`` in a daemon thread and return its result.

    The main thread only waits, so a signal handler runs as soon as SIGTERM
    or SIGINT arrives, even while ``start_up`` is blocked in librdkafka on a
    broker that does not respond. The handler starts ``stop_deadline`` and
    abandons the thread, which ends with the process.

    Raises:
        StartUpStopped: SIGTERM or SIGINT arrived before ``start_up`` returned.
        Exception: whatever ``start_up`` raised.
    """
    if threading.current_thread() is not threading.main_thread():
        # Only the main thread can set signal handlers.
        return start_up()
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["result"] = start_up()
        except BaseException as exc:
            outcome["error"] = exc

    def request_stop(signum: int, frame: FrameType | None) -> None:
        reason = signal.Signals(signum).name
        stop_deadline.start(reason)
        raise StartUpStopped(reason)

    previous = {
        stop_signal: signal.signal(stop_signal, request_stop)
        for stop_signal in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        thread = threading.Thread(target=call, name="feedback-start-up", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.1)
    finally:
        for stop_signal, handler in previous.items():
            signal.signal(stop_signal, handler)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]  # type: ignore[no-any-return]
