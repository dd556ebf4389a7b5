"""The feedback consumer's stop when the broker is gone or frozen: commit and close."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import pytest

from services.feedback.app import create_app
from services.feedback.settings import FeedbackSettings
from services.feedback.transport import (
    BrokerWait,
    FeedbackConsumerThread,
    commit_while_reachable,
)
from services.infra import find_free_port


def refused_servers() -> list[str]:
    """A loopback address where nothing listens, so connections are refused."""
    return [f"127.0.0.1:{find_free_port()}"]


@asynccontextmanager
async def accepting_servers() -> AsyncIterator[list[str]]:
    """A loopback server that accepts connections and never replies, as if frozen."""
    server = await asyncio.start_server(
        lambda reader, writer: writer.close(), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield [f"127.0.0.1:{port}"]


def seconds_passing(step: float) -> Callable[[], float]:
    """A clock that moves ``step`` seconds forward at each reading."""
    return itertools.count(step=step).__next__


def resolve_after(calls: int, commit: asyncio.Future[bool]) -> Callable[[], float]:
    """Return a clock that stays at 0 and resolves ``commit`` on reading N."""
    count = 0

    def clock() -> float:
        nonlocal count
        count += 1
        if count == calls:
            commit.set_result(True)
        return 0.0

    return clock


def test_commit_while_reachable_returns_result_of_commit() -> None:
    async def commit() -> bool:
        return True

    is_committed = asyncio.run(
        commit_while_reachable(commit(), BrokerWait(lambda: True, refused_servers()))
    )

    assert is_committed


def test_commit_while_reachable_gives_up_when_stopping_and_broker_refuses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    servers = refused_servers()

    async def give_up() -> tuple[bool, asyncio.Future[bool]]:
        commit = asyncio.get_running_loop().create_future()
        is_committed = await commit_while_reachable(
            commit, BrokerWait(lambda: True, servers, check_seconds=0.01)
        )
        return is_committed, commit

    with caplog.at_level(logging.WARNING, logger="services.feedback.transport"):
        is_committed, commit = asyncio.run(give_up())

    assert not is_committed
    assert commit.cancelled()
    assert caplog.messages == [
        "broker refuses connections, stopping without committing offsets "
        f"bootstrap={servers[0]}"
    ]


def test_commit_while_reachable_waits_for_commit_while_broker_accepts() -> None:
    async def wait_for_commit() -> bool:
        commit = asyncio.get_running_loop().create_future()
        async with accepting_servers() as servers:
            waits = BrokerWait(
                lambda: True,
                servers,
                check_seconds=0.01,
                clock=resolve_after(3, commit),
            )
            return await commit_while_reachable(commit, waits)

    is_committed = asyncio.run(wait_for_commit())

    assert is_committed


def test_commit_while_reachable_waits_for_commit_while_worker_runs() -> None:
    calls: list[None] = []

    async def wait_for_commit() -> bool:
        commit = asyncio.get_running_loop().create_future()

        def is_stopping() -> bool:
            calls.append(None)
            if len(calls) == 3:
                commit.set_result(True)
            return False

        return await commit_while_reachable(
            commit, BrokerWait(is_stopping, refused_servers(), check_seconds=0.01)
        )

    is_committed = asyncio.run(wait_for_commit())

    assert is_committed
    assert len(calls) == 3


def test_commit_gives_up_when_broker_stays_silent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def give_up() -> tuple[bool, asyncio.Future[bool], list[str]]:
        commit = asyncio.get_running_loop().create_future()
        async with accepting_servers() as servers:
            waits = BrokerWait(
                lambda: True,
                servers,
                wait_seconds=10.0,
                check_seconds=0.01,
                clock=seconds_passing(1.0),
            )
            is_committed = await commit_while_reachable(commit, waits)
        return is_committed, commit, servers

    with caplog.at_level(logging.WARNING, logger="services.feedback.transport"):
        is_committed, commit, servers = asyncio.run(give_up())

    assert not is_committed
    assert commit.cancelled()
    assert caplog.messages == [
        "broker did not respond in time, stopping without committing offsets "
        f"bootstrap={servers[0]}"
    ]


def test_broker_wait_warns_once_per_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def wait_twice() -> list[bool]:
        waits = BrokerWait(lambda: True, refused_servers(), check_seconds=0.01)
        loop = asyncio.get_running_loop()
        return [
            await waits.wait(loop.create_future()),
            await waits.wait(loop.create_future()),
        ]

    with caplog.at_level(logging.WARNING, logger="services.feedback.transport"):
        results = asyncio.run(wait_twice())

    assert results == [False, False]
    assert len(caplog.messages) == 1


class RecordedClient:
    def __init__(self) -> None:
        self.is_closed = False
        self.tasks_at_close: set[asyncio.Task[object]] = set()

    async def close(self) -> None:
        self.is_closed = True
        self.tasks_at_close = asyncio.all_tasks()


class RetryingFetchConsumer:
    """Stops as aiokafka 0.14 does while a failed fetch waits for its retry.

    aiokafka cancels the fetch and awaits it, so the fetch's cancellation
    escapes from ``stop()`` before the client is closed.
    """

    def __init__(self) -> None:
        self._client = RecordedClient()

    async def stop(self) -> None:
        fetch = asyncio.ensure_future(asyncio.sleep(60))
        await asyncio.sleep(0)
        fetch.cancel()
        await fetch


class BlockedConsumer:
    """A consumer whose stop waits until it is cancelled."""

    def __init__(self) -> None:
        self._client = RecordedClient()
        self.is_stopping = asyncio.Event()

    async def stop(self) -> None:
        self.is_stopping.set()
        await asyncio.Event().wait()


class ClosingConsumer:
    """A consumer whose stop closes its client at once."""

    def __init__(self) -> None:
        self._client = RecordedClient()

    async def stop(self) -> None:
        await self._client.close()


@pytest.fixture
def consumer_thread() -> Iterator[FeedbackConsumerThread]:
    app, _ = create_app(FeedbackSettings())
    thread = app.consumer._thread
    assert isinstance(thread, FeedbackConsumerThread)
    yield thread
    thread.thread_loop.close()


def test_consumer_thread_stop_closes_client_when_fetch_cancellation_escapes(
    consumer_thread: FeedbackConsumerThread,
) -> None:
    consumer = RetryingFetchConsumer()
    consumer_thread._consumer = consumer  # type: ignore[assignment]

    asyncio.run(consumer_thread.on_thread_stop())

    assert consumer._client.is_closed


def test_consumer_thread_stop_stays_cancelled_when_cancelled(
    consumer_thread: FeedbackConsumerThread,
) -> None:
    async def cancel_stop() -> asyncio.Task[None]:
        consumer = BlockedConsumer()
        consumer_thread._consumer = consumer  # type: ignore[assignment]
        stop = asyncio.ensure_future(consumer_thread.on_thread_stop())
        await consumer.is_stopping.wait()
        stop.cancel()
        await asyncio.gather(stop, return_exceptions=True)
        return stop

    stop = asyncio.run(cancel_stop())

    assert stop.cancelled()


def test_thread_stop_closes_client_on_silent_broker(
    consumer_thread: FeedbackConsumerThread,
) -> None:
    consumer = BlockedConsumer()
    consumer_thread._consumer = consumer  # type: ignore[assignment]

    async def stop() -> None:
        async with accepting_servers() as servers:
            consumer_thread.broker_wait = BrokerWait(
                lambda: True, servers, wait_seconds=0.0, check_seconds=0.01
            )
            await consumer_thread.on_thread_stop()

    asyncio.run(stop())

    assert consumer._client.is_closed


def test_thread_stop_cancels_requests_left_by_commit(
    consumer_thread: FeedbackConsumerThread,
) -> None:
    consumer = ClosingConsumer()
    consumer_thread._consumer = consumer  # type: ignore[assignment]
    consumer_thread.broker_wait.reason = "broker did not respond in time"

    async def stop() -> asyncio.Task[None]:
        # Left by a given-up commit, as aiokafka leaves its shielded request.
        request = asyncio.ensure_future(asyncio.Event().wait())
        await consumer_thread.on_thread_stop()
        return request

    request = asyncio.run(stop())

    assert request.cancelled()
    assert consumer._client.is_closed
    assert request not in consumer._client.tasks_at_close
