"""Check that a server responds to a protocol request, not only that it listens.

A process that is stopped (SIGSTOP) or stuck still has its listening socket,
and the kernel completes TCP handshakes for it, so a connection alone does
not show that it works. ``infra status`` therefore sends one small
request: ApiVersions (version 0, which every Kafka broker supports) to a
broker and PING to Redis. The server counts as responding when it sends any
byte or closes the connection before the timeout, so a TLS listener that
closes the connection on the plaintext request counts as responding. Only a
server that keeps the connection open without sending a byte is silent.
"""

from __future__ import annotations

import socket
import struct
from enum import StrEnum

__all__ = ["KAFKA_REQUEST", "REDIS_REQUEST", "ProbeResult", "probe"]


class ProbeResult(StrEnum):
    """Outcome of one :func:`probe`."""

    RESPONDED = "responded"
    SILENT = "silent"
    UNREACHABLE = "unreachable"


def _kafka_api_versions_request() -> bytes:
    client_id = b"cartwheel-infra-status"
    # Request header v1: api_key 18 (ApiVersions), api_version 0, correlation
    # id, client id as an int16-length string. Version 0 has an empty body.
    header = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    return struct.pack(">i", len(header)) + header


KAFKA_REQUEST = _kafka_api_versions_request()
REDIS_REQUEST = b"*1\r\n$4\r\nPING\r\n"


def probe(endpoint: str, request: bytes, timeout_seconds: float) -> ProbeResult:
    """Send ``request`` to ``host:port`` and wait for the first byte of a reply.

    Args:
        endpoint: ``host:port``; an IPv6 host may be in brackets.
        request: the bytes to send, such as :data:`KAFKA_REQUEST`.
        timeout_seconds: the time allowed for the connection, and then again
            for the reply.

    Returns:
        UNREACHABLE when the connection fails, SILENT when the server sends
        nothing and keeps the connection open for ``timeout_seconds``, and
        RESPONDED otherwise.
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
            connection.sendall(request)
            connection.recv(1)
        except TimeoutError:
            return ProbeResult.SILENT
        except OSError:
            # A reset comes from a server that closed the connection, so the
            # server process runs.
            return ProbeResult.RESPONDED
    return ProbeResult.RESPONDED
