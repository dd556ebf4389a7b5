"""The feedback app's Faust worker, with a deadline on stopping.

Faust stops its consumer in a thread of its own, which waits on the broker
for the last offset commit and for closing the consumer. Those waits give up
once the broker refuses connections, as after it has stopped, or once the
stop has waited 10 s in all, as when it accepts connections but never
responds (a frozen broker process). The worker then stops with status 0 and
without its last offset commit, and logs one WARNING line with the cause
(see :mod:`services.feedback.transport`). A wait that nothing gives up
would hold the process: Faust gives up on the thread after 60 s, and the
interpreter still waits for it before it exits. So SIGTERM or SIGINT also
starts a countdown of ``CARTWHEEL_FEEDBACK_STOP_TIMEOUT_SECONDS``. A worker
still running when it ends logs one ERROR line and exits with status 2, the
status of other broker and Redis errors, without a traceback. A stop on a
frozen broker takes about 11 s, so a countdown shorter than about 12 s ends
it that way.

Before Faust runs, the start-up checks of the topics and Redis wait in a
thread of their own (:func:`run_start_up`), so SIGTERM or SIGINT stops the
start-up at once even while the broker does not respond. The process then
ends with status 0, as after a clean stop, and the countdown started by the
signal bounds the rest of the exit in the same way.

While the process loads its modules, ``python -m services.feedback`` notes
SIGTERM and SIGINT (:mod:`services.feedback.early_signals`). From before the
start-up checks until the process exits, one handler, :class:`StopSignals`,
receives them, beginning with the one noted while loading. mode-streaming
0.7 installs its own handlers only once the worker starts, through the event
loop, and closing the loop puts back the default action, which for SIGTERM
ends the process with status 143 and no clean stop. A signal that arrives before the
worker starts stops the worker as soon as it starts, and one that arrives
after the loop has closed lets the exit finish. Once the worker runs, it
logs the first stop signal in one line: at INFO, or as a WARNING when the
process's parent has exited, as for each service of a ``cartwheel demo``
killed with SIGKILL.

What a forced stop, or a stop without the last commit, costs: nothing
counted in Redis is lost, since each message is applied atomically and
remembered by id. Messages applied after the last offset commit that
succeeded are read again by the next worker: those of the last
``CARTWHEEL_FEEDBACK_COMMIT_INTERVAL_SECONDS`` before the broker stopped
responding, and any applied afterwards from data already fetched. The
duplicate check drops each of them that is still among its user's recent ids;
older ones are counted again (L-72). The worker does not leave its consumer
group, so its partitions move to another worker after the session timeout
(3 s), and the process's Prometheus counters end with it.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

import faust

from services.common.entrypoint import ENVIRONMENT_ERROR_STATUS
from services.common.interrupts import record_stop_signal
from services.common.parent_death import has_exited, has_parent_death_signal

__all__ = [
    "FeedbackWorker",
    "StartUpStopped",
    "StopDeadline",
    "StopSignals",
    "run_start_up",
]

logger = logging.getLogger(__name__)

ResultT = TypeVar("ResultT")


class StopDeadline:
    """End the process when a stop takes longer than a timeout.

    :meth:`start` runs inside signal handlers, which Python runs on the main
    thread between two steps of whatever it was doing, even inside a
    ``with lock:`` block or ``Thread.start`` of its own. Taking a lock or
    starting a thread there can wait forever on the interrupted code, so
    :meth:`start` only records when the deadline falls. A daemon thread
    started beforehand by :meth:`watch` checks the record every
    ``check_seconds`` and ends the process once the deadline has passed.

    Args:
        timeout_seconds: how long a stop may take once :meth:`start` is called.
        exit_now: ends the process at once with the given status.
        check_seconds: how often the watching thread compares the clock with
            the deadline, so the process may end up to this much later.
    """

    def __init__(
        self,
        timeout_seconds: float,
        *,
        exit_now: Callable[[int], object] = os._exit,
        check_seconds: float = 0.25,
    ) -> None:
        self._timeout_seconds = timeout_seconds
        self._exit_now = exit_now
        self._check_seconds = check_seconds
        # (monotonic time of the deadline, signal name), set once. Assigning
        # an attribute takes no lock, so a signal handler may do it.
        self._due: tuple[float, str] | None = None
        self._is_cancelled = False
        self._watcher: threading.Thread | None = None

    def watch(self) -> None:
        """Start the thread that ends the process at the deadline, once.

        Call it outside signal handlers, before the first :meth:`start`.
        """
        if self._watcher is not None:
            return
        # A daemon thread, so that it never delays an exit by itself.
        self._watcher = threading.Thread(
            target=self._wait_for_deadline, name="feedback-stop-deadline", daemon=True
        )
        self._watcher.start()

    def start(self, reason: str) -> None:
        """Start the countdown unless it already runs, keeping the first one.

        Without an earlier :meth:`watch` this starts the watching thread
        too, which is safe outside signal handlers only.

        Args:
            reason: the signal that requested the stop, such as ``SIGTERM``,
                for the log line.
        """
        if self._due is None:
            self._due = (time.monotonic() + self._timeout_seconds, reason)
        if self._watcher is None:
            self.watch()

    def cancel(self) -> None:
        """Stop the countdown, if one runs, for good."""
        self._is_cancelled = True

    def _wait_for_deadline(self) -> None:
        while not self._is_cancelled:
            due = self._due
            if due is not None and time.monotonic() >= due[0]:
                self._give_up(due[1])
                return
            time.sleep(self._check_seconds)

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


class StopSignals:
    """Handle SIGTERM and SIGINT in this process from :meth:`install` until exit.

    Each signal starts the stop deadline and is passed to the callback that
    :meth:`forward_to` set, if any. The first one is kept in ``requested``,
    so that a part of the process that starts later can stop at once.

    Args:
        stop_deadline: started by the first signal.
        parent_pid: the process that started this one, by default the
            parent at creation. A stop signal that arrives once it has exited
            is logged as its death.
    """

    def __init__(
        self, stop_deadline: StopDeadline, parent_pid: int | None = None
    ) -> None:
        self.requested: signal.Signals | None = None
        self.parent_pid = os.getppid() if parent_pid is None else parent_pid
        self._stop_deadline = stop_deadline
        self._forward: Callable[[signal.Signals], None] | None = None
        self._is_stop_logged = False

    def install(
        self, received: Callable[[], signal.Signals | None] = lambda: None
    ) -> None:
        """Replace the process's SIGTERM and SIGINT handlers, for good.

        Only the main thread can set handlers; elsewhere nothing changes.

        Args:
            received: returns the signal that an earlier handler noted, if
                any, which is then handled as if it arrived now. It is
                called after this handler is in place, so a signal that
                arrives meanwhile reaches one handler or the other.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        self._stop_deadline.watch()
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop_signal, self._handle)
        # CPython 3.11 resets Python-level handlers to the default action
        # after the exit functions have run, but leaves ignored signals
        # ignored. By then the worker has stopped and its threads are joined.
        atexit.register(self._ignore)
        noted = received()
        if noted is not None:
            self._handle(noted, None)

    def _ignore(self) -> None:
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop_signal, signal.SIG_IGN)

    def forward_to(self, forward: Callable[[signal.Signals], None] | None) -> None:
        """Pass each later signal to ``forward``, or to nothing when it is None.

        ``forward`` runs in the signal handler on the main thread, between
        two steps of whatever that thread runs.
        """
        self._forward = forward

    def log_stop(self, stop_signal: signal.Signals) -> None:
        """Log why the process stops, once, outside signal handlers.

        When the parent has exited, perhaps killed with SIGKILL, and it asked
        for a signal on its death when it started this process, that signal
        is the stop, and the line is a WARNING. Any other stop is logged at
        INFO, including a signal from an operator to a worker whose shell has
        exited. Later signals add no
        line, since a parent that dies thread by thread sends several.
        """
        if self._is_stop_logged:
            return
        self._is_stop_logged = True
        is_parent_gone = os.getppid() != self.parent_pid or has_exited(self.parent_pid)
        if is_parent_gone and has_parent_death_signal():
            logger.warning(
                "parent process exited, stopping signal=%s parent_pid=%d",
                stop_signal.name,
                self.parent_pid,
            )
        else:
            logger.info("stop requested signal=%s", stop_signal.name)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        stop_signal = signal.Signals(signum)
        # cartwheel then ignores a repeated signal after the worker returned.
        record_stop_signal(signum)
        self._stop_deadline.start(stop_signal.name)
        if self.requested is None:
            self.requested = stop_signal
        if self._forward is not None:
            self._forward(stop_signal)


class FeedbackWorker(faust.Worker):
    """A Faust worker that starts a :class:`StopDeadline` on SIGTERM or SIGINT.

    Args:
        app: the feedback app.
        stop_deadline: started when a stop signal arrives.
        stop_signals: the process's handler of SIGTERM and SIGINT, which
            passes them to the worker once it starts.
        **kwargs: passed to :class:`faust.Worker`.
    """

    def __init__(
        self,
        app: faust.App,
        *,
        stop_deadline: StopDeadline,
        stop_signals: StopSignals,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self._stop_deadline = stop_deadline
        self._stop_signals = stop_signals

    def install_signal_handlers(self) -> None:
        # mode-streaming 0.7 calls this once the worker starts. Its own
        # SIGTERM and SIGINT handlers belong to the event loop, which resets
        # them to the default action when it closes, so StopSignals keeps
        # them. SIGUSR1 and SIGUSR2 stay mode's.
        self._stop_signals.forward_to(self._forward_stop)
        if self._stop_signals.requested is not None:
            self._forward_stop(self._stop_signals.requested)
        self.loop.add_signal_handler(signal.SIGUSR1, self._on_sigusr1)
        self.loop.add_signal_handler(signal.SIGUSR2, self._on_sigusr2)

    def _forward_stop(self, stop_signal: signal.Signals) -> None:
        # This may run in a signal handler in the middle of the loop's own
        # code. So it only queues the stop, and call_soon_threadsafe also
        # wakes the loop. A closed loop means that the worker has stopped.
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self._stop_on, stop_signal)

    def _stop_on(self, stop_signal: signal.Signals) -> None:
        self._stop_signals.log_stop(stop_signal)
        if stop_signal is signal.SIGTERM:
            self._on_sigterm()
        else:
            self._on_sigint()

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


def run_start_up(start_up: Callable[[], ResultT], stop_signals: StopSignals) -> ResultT:
    """Run ``start_up`` in a daemon thread and return its result.

    The main thread only waits, so the signal handler runs as soon as SIGTERM
    or SIGINT arrives, even while ``start_up`` is blocked in librdkafka on a
    broker that does not respond. The thread is then abandoned, and it ends
    with the process.

    Raises:
        StartUpStopped: SIGTERM or SIGINT arrived, since ``stop_signals`` was
            installed, before ``start_up`` returned.
        Exception: whatever ``start_up`` raised.
    """
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["result"] = start_up()
        except BaseException as exc:
            outcome["error"] = exc

    def request_stop(stop_signal: signal.Signals) -> None:
        raise StartUpStopped(stop_signal.name)

    stop_signals.forward_to(request_stop)
    try:
        if stop_signals.requested is not None:
            raise StartUpStopped(stop_signals.requested.name)
        thread = threading.Thread(target=call, name="feedback-start-up", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.1)
    finally:
        stop_signals.forward_to(None)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]  # type: ignore[no-any-return]
