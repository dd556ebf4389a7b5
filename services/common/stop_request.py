"""A stop request that lets a stopping service give up on a broker that is gone.

A service asked to stop first finishes what it started: it flushes its
producers and commits its offsets. When the broker has stopped too, as when a
``cartwheel demo`` killed with SIGKILL takes its broker and its services down
together, each of those waits would run to its timeout for nothing. A broker
that has stopped refuses connections, unlike one that is frozen or
overloaded. So once a stop is requested and no bootstrap server accepts a TCP
connection, :func:`flush_while_reachable` gives up and raises
:class:`~services.common.errors.BrokerGoneError`. A frozen broker accepts
connections but takes nothing, so a stop also gives up once it has waited
``wait_seconds`` (10 s by default) in all. The stop then ends well inside
the 30 s that Kubernetes and compose allow before SIGKILL.
The caller then leaves its offsets uncommitted, and the next consumer reads
those messages again, as after a crash.

An offset commit has the same problem with a frozen broker, and worse:
librdkafka's synchronous commit has no timeout and blocks the calling thread
until the group coordinator responds, and Python runs no signal handler
meanwhile. :func:`commit_while_reachable` runs the commit on a thread of its
own and gives up on the same conditions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from confluent_kafka import Consumer, Producer, TopicPartition

from services.common.errors import BrokerGoneError, CommitPendingError
from services.common.kafka import refuses_connections
from services.common.settings import KafkaSettings

__all__ = [
    "STOP_WAIT_SECONDS",
    "StopRequest",
    "commit_while_reachable",
    "flush_while_reachable",
]

# While a stop is requested, a flush checks the broker this often, and once
# before it waits at all.
_CHECK_SECONDS = 0.5
# The broker waits of one stop last at most this long in all, counted from the
# stop. The feedback worker's stop uses it too (services.feedback.transport).
STOP_WAIT_SECONDS = 10.0


class StopRequest:
    """A service's request to stop, with a check of whether its broker is gone.

    :meth:`set` is safe to call from a signal handler or another thread. The
    checks run on the thread that waits.

    Args:
        kafka: the connection settings whose bootstrap servers are checked.
        wait_seconds: how long the flushes of a stop may wait in all for a
            broker that accepts connections, counted from :meth:`set`.
        clock: monotonic clock in seconds.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        wait_seconds: float = STOP_WAIT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kafka = kafka
        self._wait_seconds = wait_seconds
        self._clock = clock
        self._is_set = threading.Event()
        self._set_at: float | None = None
        self._is_broker_gone = False

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers that :meth:`is_broker_gone` checks."""
        return self._kafka.bootstrap

    def set(self) -> None:
        """Record that the service was asked to stop."""
        if self._set_at is None:
            self._set_at = self._clock()
        self._is_set.set()

    def is_set(self) -> bool:
        """Return True once :meth:`set` was called."""
        return self._is_set.is_set()

    def is_broker_gone(self) -> bool:
        """Return True when a stop is requested and every bootstrap server refuses.

        Once True it stays True, so the rest of the stop waits for nothing.
        """
        if not self._is_broker_gone and self.is_set():
            self._is_broker_gone = refuses_connections(self._kafka)
        return self._is_broker_gone

    def is_overdue(self) -> bool:
        """Return True when a stop was requested ``wait_seconds`` ago or more."""
        set_at = self._set_at
        return set_at is not None and self._clock() - set_at >= self._wait_seconds


def flush_while_reachable(
    producer: Producer, timeout_seconds: float, stop: StopRequest | None
) -> int:
    """Flush ``producer`` like ``Producer.flush``, unless a stop finds the broker gone.

    Args:
        producer: the producer whose queued messages are delivered.
        timeout_seconds: the maximum wait, in seconds.
        stop: the service's stop request. None waits the whole timeout.

    Returns:
        The number of messages still queued.

    Raises:
        BrokerGoneError: messages were still queued when a stop was requested
            and no bootstrap server accepted a connection, or when the stop
            had waited its ``wait_seconds``.
    """
    if stop is None:
        return producer.flush(timeout_seconds)
    deadline = time.monotonic() + timeout_seconds
    # A flush without a wait serves the delivery reports of what is done.
    remaining = producer.flush(0)
    while remaining:
        if stop.is_broker_gone():
            raise BrokerGoneError(
                f"{remaining} message(s) not confirmed: the service is stopping "
                f"and no broker accepts connections at {stop.bootstrap}"
            )
        if stop.is_overdue():
            raise BrokerGoneError(
                f"{remaining} message(s) not confirmed: the service is stopping "
                f"and the broker at {stop.bootstrap} did not confirm them in "
                "time, so they may or may not be stored"
            )
        remaining_seconds = deadline - time.monotonic()
        if remaining_seconds <= 0:
            break
        remaining = producer.flush(min(_CHECK_SECONDS, remaining_seconds))
    return remaining


def commit_while_reachable(
    consumer: Consumer, offsets: Sequence[TopicPartition], stop: StopRequest
) -> None:
    """Commit ``offsets`` synchronously, unless a stop gives up on the broker.

    The commit runs on a daemon thread while the calling thread checks
    ``stop`` every 0.5 s, on the same conditions as
    :func:`flush_while_reachable`. A commit that was given up keeps waiting on
    its thread. librdkafka's ``close`` would wait for it too, so the caller
    must not close ``consumer`` after :class:`CommitPendingError`. The process
    can still exit, because the daemon thread keeps the consumer referenced.

    Raises:
        confluent_kafka.KafkaException: the commit failed.
        CommitPendingError: a stop found the broker gone, or had waited its
            ``wait_seconds``, before the commit returned.
    """
    done = threading.Event()
    errors: list[Exception] = []

    def commit() -> None:
        try:
            consumer.commit(offsets=list(offsets), asynchronous=False)
        except Exception as exc:  # raised on the calling thread
            errors.append(exc)
        finally:
            done.set()

    threading.Thread(target=commit, name="offset-commit", daemon=True).start()
    while not done.wait(_CHECK_SECONDS):
        if stop.is_broker_gone():
            raise CommitPendingError(
                "offsets not committed: the service is stopping and no broker "
                f"accepts connections at {stop.bootstrap}"
            )
        if stop.is_overdue():
            raise CommitPendingError(
                "offsets not committed: the service is stopping and the broker "
                f"at {stop.bootstrap} did not respond to the commit in time"
            )
    if errors:
        raise errors[0]
