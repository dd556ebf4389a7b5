"""Faust's aiokafka transport, with a consumer that stops when the broker does not.

A broker that has stopped refuses connections, and a frozen broker process
accepts them but never responds. Two parts of a Faust worker's stop then
wait for it, and the worker's stop deadline
(``CARTWHEEL_FEEDBACK_STOP_TIMEOUT_SECONDS``) would end the process with
status 2. A stopped broker is common: a ``cartwheel demo`` killed with
SIGKILL takes its broker and services down together.

- The last offset commit: aiokafka 0.14 retries a commit until the group
  coordinator responds, without a limit.
- Closing the consumer: aiokafka waits for the group request in flight, such
  as a join, and then sends a request to leave the group.

So each of these waits gives up once the worker stops and no bootstrap
server accepts a connection, or once the stop has waited 10 s in all,
counted from when the consumer first detects it. That is the budget of
the other services' stops (:data:`~services.common.stop_request.STOP_WAIT_SECONDS`).
The first wait that gives up logs one WARNING with the cause, and every
later one gives up at its first check. The worker stops without its last
commit, as after a crash: the messages since the last commit are read again
by the next worker (see :mod:`services.feedback.worker`).

Two details of aiokafka need handling once a wait gives up. aiokafka keeps
the request of a cancelled commit waiting, and closing the connections would
fail it with a traceback. So the stop cancels the consumer thread's other
tasks before it closes the consumer, as mode does anyway when the thread
ends. And aiokafka cancels each fetch still in flight and awaits it. A fetch
that failed because the broker went away waits before its retry, and
cancelling that wait makes the awaited fetch raise ``CancelledError`` out
of ``AIOKafkaConsumer.stop()`` before the consumer has closed its
connections. In Faust's consumer thread that error would end the thread with
a traceback and without telling the main thread that the consumer stopped.
The thread here closes the connections itself and ends normally.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from services.common.stop_request import STOP_WAIT_SECONDS

__all__ = [
    "BrokerWait",
    "FeedbackConsumer",
    "FeedbackConsumerThread",
    "FeedbackTransport",
    "commit_while_reachable",
]

logger = logging.getLogger(__name__)

# mode names a service class's logger after the class's module unless the
# class sets its own. This one keeps the start and stop lines of the classes
# below among Faust's, which configure_logging sets to WARNING.
_faust_logger = logging.getLogger(f"{faust_aiokafka.__name__}.feedback")

# How often a broker wait that has not finished checks the stop and the
# broker. aiokafka retries a commit every 0.1 s.
_CHECK_SECONDS = 0.5


class BrokerWait:
    """The broker waits of one worker's stop, which give up on the broker together.

    A wait gives up once the worker stops and no bootstrap server accepts a
    connection, or once ``wait_seconds`` have passed since a wait or a check
    first saw the stop. Once given up, every later wait gives up at its
    first check too, and :attr:`reason` contains the cause.

    Args:
        is_stopping: returns True once the worker is asked to stop.
        servers: the broker's bootstrap servers, as ``host:port``.
        wait_seconds: how long the waits of a stop may last in all.
        check_seconds: how often a wait checks the stop and the broker.
        clock: monotonic clock in seconds.
    """

    def __init__(
        self,
        is_stopping: Callable[[], bool],
        servers: Sequence[str],
        *,
        wait_seconds: float = STOP_WAIT_SECONDS,
        check_seconds: float = _CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.servers = list(servers)
        self.reason: str | None = None
        self._is_stopping = is_stopping
        self._wait_seconds = wait_seconds
        self._check_seconds = check_seconds
        self._clock = clock
        self._stop_seen_at: float | None = None

    async def wait(self, task: asyncio.Future[Any]) -> bool:
        """Wait for ``task``, unless the stop gives up on the broker first.

        Returns:
            True when ``task`` finished, and False when the stop gave up on
            the broker: ``task`` is then cancelled and awaited.
        """
        try:
            while True:
                self._note_stop()
                done, _ = await asyncio.wait({task}, timeout=self._check_seconds)
                if done:
                    return True
                if await self._gives_up():
                    break
        finally:
            # Ends the task when the stop gives up, and when this wait is
            # cancelled; a finished task ignores it.
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False

    def _note_stop(self) -> None:
        if self._stop_seen_at is None and self._is_stopping():
            self._stop_seen_at = self._clock()

    async def _gives_up(self) -> bool:
        if self.reason is not None:
            return True
        self._note_stop()
        if self._stop_seen_at is None:
            return False
        if await _refuse_connections(self.servers):
            self.reason = "broker refuses connections"
        elif self._clock() - self._stop_seen_at >= self._wait_seconds:
            self.reason = "broker did not respond in time"
        else:
            return False
        logger.warning(
            "%s, stopping without committing offsets bootstrap=%s",
            self.reason,
            ",".join(self.servers),
        )
        return True


async def commit_while_reachable(commit: Awaitable[bool], waits: BrokerWait) -> bool:
    """Wait for ``commit``, unless the stop gives up on the broker first.

    Args:
        commit: the offset commit, which may retry forever.
        waits: the broker waits of the worker's stop.

    Returns:
        The result of ``commit``, or False when the stop gave up on the
        broker and the commit was cancelled.
    """
    task = asyncio.ensure_future(commit)
    if await waits.wait(task):
        return task.result()
    return False


async def _refuse_connections(servers: Sequence[str]) -> bool:
    """Return True when no ``host:port`` in ``servers`` accepts a TCP connection."""
    for server in servers:
        host, _, port = server.rpartition(":")
        try:
            _, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            continue
        writer.close()
        await writer.wait_closed()
        return False
    return True


class FeedbackConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, whose stop gives up on a broker gone or frozen."""

    logger = _faust_logger

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The servers that aiokafka bootstraps from.
        servers = faust_aiokafka.server_list(
            self.transport.url, faust_aiokafka.Transport.default_port
        )
        self.broker_wait = BrokerWait(lambda: self.app.should_stop, servers)

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        return await commit_while_reachable(super()._commit(offsets), self.broker_wait)

    async def on_thread_stop(self) -> None:
        # Faust's thread stops its method queue, which runs the calls from
        # the worker, and then its consumer. A stop that has given up on the
        # broker cancels in between the requests that still wait for it.
        await self._wait_or_abandon(self._stop_method_queue())
        if self.broker_wait.reason is not None:
            await _cancel_other_tasks()
        await self._wait_or_abandon(self._close_consumer())

    async def _stop_method_queue(self) -> None:
        # The method of the class that Faust's consumer thread extends.
        await super(faust_aiokafka.AIOKafkaConsumerThread, self).on_thread_stop()

    async def _close_consumer(self) -> None:
        if self._consumer is None:
            return
        try:
            await self._consumer.stop()
        except asyncio.CancelledError:
            # A stop that is itself being cancelled must stay cancelled; only
            # the cancellation that aiokafka passes on from a fetch is ended.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            logger.debug("kafka consumer stopped with a fetch waiting for its retry")
            # aiokafka's stop raised before it closed the client. The fetches
            # it did not reach are cancelled by mode when the thread ends.
            await self._consumer._client.close()

    async def _wait_or_abandon(self, step: Awaitable[None]) -> None:
        """Run one step of the stop, unless the stop gives up on the broker first.

        A step given up is cancelled, and so are the thread's other tasks,
        before the consumer's connections close.
        """
        task = asyncio.ensure_future(step)
        if await self.broker_wait.wait(task):
            task.result()
            return
        await _cancel_other_tasks()
        if self._consumer is not None:
            await self._consumer._client.close()


async def _cancel_other_tasks() -> None:
    """Cancel every task of the running loop but the current one.

    mode does the same when a consumer thread ends. A cancelled request that
    still waits for the broker cannot fail once the connections close. It
    waits at most ``_CHECK_SECONDS`` for the tasks to end, because mode's
    method queue ignores a cancellation that reaches it during a call.
    """
    current = asyncio.current_task()
    tasks = {task for task in asyncio.all_tasks() if task is not current}
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=_CHECK_SECONDS)


class FeedbackConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, run by a :class:`FeedbackConsumerThread`."""

    logger = _faust_logger

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return FeedbackConsumerThread(self, loop=self.loop, beacon=self.beacon)


class FeedbackTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport, whose consumers are :class:`FeedbackConsumer`."""

    Consumer = FeedbackConsumer
