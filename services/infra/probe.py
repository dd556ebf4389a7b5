"""Check that a server speaks its protocol, not only that it listens.

A process that is stopped (SIGSTOP) or stuck still has its listening socket,
and the kernel completes TCP handshakes for it, so a connection alone does
not show that it works. Another program on the port, such as an HTTP
server, replies too. ``infra status`` therefore sends one small request and
reads the reply:

- Kafka: ApiVersions version 0, which every Kafka broker supports before any
  authentication. The reply must carry the request's correlation id.
- Redis: PING. The reply must be ``+PONG`` or an error reply such as
  ``-NOAUTH Authentication required.``, which only Redis sends this way.
- TLS (an external server reached with TLS): the plaintext request above.
  Without the handshake the server cannot read it, so it counts as a TLS
  listener when it replies with a TLS alert record or closes the connection
  without a reply.

Each reply is read until it decides the check or the timeout passes, and at
most :data:`MAX_REPLY_BYTES` bytes.
"""

from __future__ import annotations

import re
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "KAFKA",
    "MAX_REPLY_BYTES",
    "REDIS",
    "ProbeProtocol",
    "ProbeResult",
    "probe",
    "tls_listener",
]

MAX_REPLY_BYTES = 512
"""The maximum number of bytes of a reply that a check reads."""


class ProbeResult(StrEnum):
    """Outcome of one :func:`probe`."""

    RESPONDED = "responded"
    # A reply came, or the connection was closed, but not as the protocol
    # replies: another program has the port.
    OTHER_PROTOCOL = "other protocol"
    SILENT = "silent"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class ProbeProtocol:
    """A request and the check of its reply.

    Attributes:
        name: the protocol, for messages.
        request: the bytes to send.
        check_reply: returns True when the bytes read so far are a reply of
            the protocol, False when they cannot become one, and None when
            more bytes are needed.
        is_close_a_reply: whether a connection closed without a reply counts
            as one, as for a TLS listener that rejects the plaintext request.
    """

    name: str
    request: bytes
    check_reply: Callable[[bytes], bool | None]
    is_close_a_reply: bool = False


_KAFKA_CORRELATION_ID = 0x63617274  # "cart" in ASCII


def _kafka_api_versions_request() -> bytes:
    client_id = b"cartwheel-infra-status"
    # Request header v1: api_key 18 (ApiVersions), api_version 0, correlation
    # id, client id as an int16-length string. Version 0 has an empty body.
    header = (
        struct.pack(">hhih", 18, 0, _KAFKA_CORRELATION_ID, len(client_id)) + client_id
    )
    return struct.pack(">i", len(header)) + header


def _check_kafka_reply(reply: bytes) -> bool | None:
    # Response header v0: int32 size, then the correlation id of the request.
    if len(reply) < 8:
        return None
    size, correlation_id = struct.unpack(">ii", reply[:8])
    return bool(size >= 4 and correlation_id == _KAFKA_CORRELATION_ID)


# A RESP error reply starts with an upper-case error code: -ERR, -NOAUTH,
# -WRONGPASS, -LOADING (while Redis reads its data at start) and so on.
_REDIS_ERROR = re.compile(rb"-[A-Z]+( [^\r\n]*)?")


def _check_redis_reply(reply: bytes) -> bool | None:
    line, has_end, _ = reply.partition(b"\r\n")
    if not has_end:
        # The first byte already distinguishes a simple string or an error
        # reply from anything else.
        if reply[:1] not in (b"", b"+", b"-"):
            return False
        return None
    return line == b"+PONG" or _REDIS_ERROR.fullmatch(line) is not None


def _check_tls_reply(reply: bytes) -> bool | None:
    # A TLS record starts with its content type (21 for an alert) and the
    # major version 3, whatever the TLS version.
    if len(reply) < 2:
        return None
    return reply[:2] == b"\x15\x03"


KAFKA = ProbeProtocol("Kafka", _kafka_api_versions_request(), _check_kafka_reply)
REDIS = ProbeProtocol("Redis", b"*1\r\n$4\r\nPING\r\n", _check_redis_reply)


def tls_listener(protocol: ProbeProtocol) -> ProbeProtocol:
    """Return the check of a server that speaks ``protocol`` behind TLS."""
    return ProbeProtocol(
        f"{protocol.name} over TLS",
        protocol.request,
        _check_tls_reply,
        is_close_a_reply=True,
    )


def probe(
    endpoint: str, protocol: ProbeProtocol, timeout_seconds: float
) -> ProbeResult:
    """Send the request of ``protocol`` to ``host:port`` and check the reply.

    Args:
        endpoint: ``host:port``; an IPv6 host may be in brackets.
        protocol: the request to send and the check of its reply, such as
            :data:`KAFKA`.
        timeout_seconds: the time allowed for the connection, and then again
            for the whole reply.

    Returns:
        UNREACHABLE when the connection fails. SILENT when the reply is not
        complete within ``timeout_seconds``, for a server that sends nothing
        or stops in the middle. RESPONDED when the reply is one of
        ``protocol``, and OTHER_PROTOCOL otherwise.
    """
    host, _, port = endpoint.rpartition(":")
    try:
        connection = socket.create_connection(
            (host.strip("[]"), int(port)), timeout=timeout_seconds
        )
    except (OSError, ValueError):
        return ProbeResult.UNREACHABLE
    with connection:
        try:
            connection.sendall(protocol.request)
            verdict = _read_reply(connection, protocol, timeout_seconds)
        except TimeoutError:
            return ProbeResult.SILENT
        except OSError:
            # A reset, as a closed connection, ends the reply.
            verdict = None
    if verdict is None:
        verdict = protocol.is_close_a_reply
    return ProbeResult.RESPONDED if verdict else ProbeResult.OTHER_PROTOCOL


def _read_reply(
    connection: socket.socket, protocol: ProbeProtocol, timeout_seconds: float
) -> bool | None:
    """Read until the reply is decided, and return None if the server closes first.

    Raises:
        TimeoutError: the reply is not decided within ``timeout_seconds``.
    """
    deadline = time.monotonic() + timeout_seconds
    reply = b""
    while True:
        verdict = protocol.check_reply(reply)
        if verdict is not None:
            return verdict
        if len(reply) >= MAX_REPLY_BYTES:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        connection.settimeout(remaining)
        chunk = connection.recv(MAX_REPLY_BYTES - len(reply))
        if not chunk:
            return None
        reply += chunk
