"""The protocol probe behind ``infra status``, against loopback sockets."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest

from services.infra import find_free_port
from services.infra.probe import KAFKA_REQUEST, REDIS_REQUEST, ProbeResult, probe


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback socket that listens but never accepts, like a stopped server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server


def endpoint_of(server: socket.socket) -> str:
    host, port = server.getsockname()
    return f"{host}:{port}"


def serve_once(
    server: socket.socket, handle: Callable[[socket.socket], None]
) -> threading.Thread:
    def accept() -> None:
        connection, _ = server.accept()
        with connection:
            handle(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return thread


def test_probe_reports_silent_server(listener: socket.socket) -> None:
    result = probe(endpoint_of(listener), REDIS_REQUEST, timeout_seconds=0.2)

    assert result is ProbeResult.SILENT


def test_probe_reports_closed_port_unreachable() -> None:
    result = probe(f"127.0.0.1:{find_free_port()}", REDIS_REQUEST, 0.2)

    assert result is ProbeResult.UNREACHABLE


def test_probe_reports_reply_as_responded(listener: socket.socket) -> None:
    received: list[bytes] = []

    def reply(connection: socket.socket) -> None:
        received.append(connection.recv(len(REDIS_REQUEST)))
        connection.sendall(b"+PONG\r\n")

    thread = serve_once(listener, reply)

    result = probe(endpoint_of(listener), REDIS_REQUEST, timeout_seconds=5)

    thread.join(timeout=5)
    assert result is ProbeResult.RESPONDED
    assert received == [REDIS_REQUEST]


def test_probe_reports_closed_connection_as_responded(
    listener: socket.socket,
) -> None:
    thread = serve_once(listener, lambda connection: None)

    result = probe(endpoint_of(listener), KAFKA_REQUEST, timeout_seconds=5)

    thread.join(timeout=5)
    assert result is ProbeResult.RESPONDED


def test_kafka_request_is_api_versions_v0() -> None:
    size, api_key, api_version = struct.unpack(">ihh", KAFKA_REQUEST[:8])

    assert size == len(KAFKA_REQUEST) - 4
    assert api_key == 18
    assert api_version == 0
