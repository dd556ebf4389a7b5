"""Pipelined Redis commands with raw replies, for the scoring stage.

A redis-py pipeline runs each reply through a response callback (``HGETALL``
becomes a dict, ``ZRANGE ... WITHSCORES`` a list of pairs with float scores)
and keeps per-command bookkeeping. The scoring stage sends thousands of
commands per batch, and that per-reply work is a large part of their cost
(``docs/benchmarks/hotpath.md`` compares the stage with and without it).
:func:`run_pipelined` sends the commands in one write and returns hiredis's
replies as they are: bytes, integers, lists, and maps in RESP3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hiredis
import redis
from redis.exceptions import ResponseError

__all__ = ["Command", "run_pipelined"]

Command = tuple[str | bytes | int | float, ...]


def run_pipelined(client: redis.Redis, commands: Sequence[Command]) -> list[Any]:
    """Run commands in one round trip and return their undecoded replies, in order.

    Connection errors are retried with the client's retry policy, on a fresh
    connection, as redis-py retries a pipeline; only idempotent commands belong
    here. Every reply is read before an error reply is raised, so no unread reply
    stays on the pooled connection.

    Raises:
        redis.exceptions.ResponseError: the first error reply (e.g. WRONGTYPE).
        redis.exceptions.ConnectionError: Redis stayed unreachable.
    """
    if not commands:
        return []
    # hiredis's type stubs declare a one-element tuple; it takes any length.
    pack: Any = hiredis.pack_command
    packed = b"".join([pack(command) for command in commands])
    connection: Any = client.connection_pool.get_connection()
    try:
        return connection.retry.call_with_retry(  # type: ignore[no-any-return]
            lambda: _exchange(connection, packed, len(commands)),
            lambda _error: connection.disconnect(),
        )
    finally:
        client.connection_pool.release(connection)


def _exchange(connection: Any, packed: bytes, count: int) -> list[Any]:
    connection.send_packed_command([packed])
    replies: list[Any] = []
    first_error: ResponseError | None = None
    try:
        for _ in range(count):
            try:
                replies.append(connection.read_response(disable_decoding=True))
            except ResponseError as error:
                first_error = first_error or error
                replies.append(None)
    except BaseException:
        connection.disconnect()
        raise
    if first_error is not None:
        raise first_error
    return replies
