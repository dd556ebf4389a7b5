"""Faust's aiokafka transport, with a consumer that also stops when the broker is gone.

A broker that has stopped refuses connections. Two parts of a Faust worker's
stop then wait for it, and the worker's stop deadline
(``CARTWHEEL_FEEDBACK_STOP_TIMEOUT_SECONDS``) ends the process with status 2.
It happens whenever the broker stops shortly before the worker, as when a
``cartwheel demo`` killed with SIGKILL takes its broker and services down
together.

- The last offset commit: aiokafka 0.14 retries a commit until the group
  coordinator responds, without a limit. A stopping worker's commit therefore
  gives up once no bootstrap server accepts a connection, and the worker
  stops without it, as after a crash: the messages since the last commit are
  read again by the next worker (see :mod:`services.feedback.worker`).
- Closing the consumer: aiokafka cancels each fetch still in flight and
  awaits it. A fetch that failed because the broker went away waits before
  its retry, and cancelling that wait makes the awaited fetch raise
  ``CancelledError`` out of ``AIOKafkaConsumer.stop()`` before the consumer
  has closed its connections. In Faust's consumer thread that error would
  end the thread with a traceback and without telling the main thread that
  the consumer stopped. The thread here closes the connections itself and
  ends normally.

A broker that accepts connections but never responds still holds the stop
up until the deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

__all__ = [
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

# How often a commit that has not finished checks whether the worker stops
# and the broker is gone; aiokafka retries a commit every 0.1 s.
_CHECK_SECONDS = 0.5


async def commit_while_reachable(
    commit: Awaitable[bool],
    is_stopping: Callable[[], bool],
    servers: Sequence[str],
    check_seconds: float = _CHECK_SECONDS,
) -> bool:
    """Wait for ``commit``, unless the worker stops while the broker is gone.

    Args:
        commit: the offset commit, which may retry forever.
        is_stopping: returns True once the worker is asked to stop.
        servers: the broker's bootstrap servers, as ``host:port``.
        check_seconds: how often the checks run while the commit waits.

    Returns:
        The result of ``commit``, or False when it was cancelled because the
        worker stops and every server refused a connection.
    """
    task = asyncio.ensure_future(commit)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=check_seconds)
            if done:
                return task.result()
            if is_stopping() and await _refuse_connections(servers):
                break
    finally:
        # Ends the commit when the broker is gone, and when this wait is
        # cancelled; a finished commit ignores it.
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    logger.warning(
        "broker refuses connections, stopping without committing offsets bootstrap=%s",
        ",".join(servers),
    )
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
    """Faust's consumer thread, whose stop does not wait for a broker that is gone."""

    logger = _faust_logger

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        # The servers that aiokafka bootstraps from.
        servers = faust_aiokafka.server_list(
            self.transport.url, faust_aiokafka.Transport.default_port
        )
        return await commit_while_reachable(
            super()._commit(offsets), lambda: self.app.should_stop, servers
        )

    async def on_thread_stop(self) -> None:
        try:
            await super().on_thread_stop()
        except asyncio.CancelledError:
            # A stop that is itself being cancelled must stay cancelled; only
            # the cancellation that aiokafka passes on from a fetch is ended.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            logger.debug("kafka consumer stopped with a fetch waiting for its retry")
            # aiokafka's stop raised before it closed the client. The fetches
            # it did not reach are cancelled by mode when the thread ends.
            if self._consumer is not None:
                await self._consumer._client.close()


class FeedbackConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, run by a :class:`FeedbackConsumerThread`."""

    logger = _faust_logger

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return FeedbackConsumerThread(self, loop=self.loop, beacon=self.beacon)


class FeedbackTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport, whose consumers are :class:`FeedbackConsumer`."""

    Consumer = FeedbackConsumer
