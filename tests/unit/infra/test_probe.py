"""The protocol probe behind ``infra status``, against loopback sockets."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest

from services.infra import find_free_port
from services.infra.probe import (
    KAFKA,
    MAX_REPLY_BYTES,
    REDIS,
    ProbeProtocol,
    ProbeResult,
    probe,
    tls_listener,
)

HTTP_REPLY = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"


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


@pytest.fixture
def serve_once(
    listener: socket.socket,
) -> Iterator[Callable[[Callable[[socket.socket], None]], str]]:
    """Return a factory that serves one connection with a handler, in a thread.

    The factory returns the listener's ``host:port``. Teardown waits for the
    handler, so a handler that keeps its connection open must return by itself.
    """
    threads: list[threading.Thread] = []

    def serve(handle: Callable[[socket.socket], None]) -> str:
        def accept() -> None:
            connection, _ = listener.accept()
            with connection:
                handle(connection)

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        threads.append(thread)
        return endpoint_of(listener)

    yield serve
    for thread in threads:
        thread.join(timeout=10)


def reply_after_request(
    protocol: ProbeProtocol, reply: bytes
) -> Callable[[socket.socket], None]:
    """Return a handler that reads the whole request of ``protocol``, then replies."""

    def handle(connection: socket.socket) -> None:
        connection.settimeout(10)
        received = b""
        while len(received) < len(protocol.request):
            received += connection.recv(len(protocol.request) - len(received))
        connection.sendall(reply)

    return handle


def kafka_reply(correlation_id: int) -> bytes:
    # ApiVersions v0 response: error_code 0 and an empty array of versions.
    body = struct.pack(">ihi", correlation_id, 0, 0)
    return struct.pack(">i", len(body)) + body


def correlation_id_of(request: bytes) -> int:
    _, _, _, correlation_id = struct.unpack(">ihhi", request[:12])
    return int(correlation_id)


def test_probe_reports_server_that_never_accepts_as_silent(
    listener: socket.socket,
) -> None:
    result = probe(endpoint_of(listener), REDIS, timeout_seconds=0.2)

    assert result is ProbeResult.SILENT


@pytest.mark.parametrize("protocol", [KAFKA, REDIS], ids=["kafka", "redis"])
def test_probe_reports_reading_server_as_silent(
    serve_once: Callable[[Callable[[socket.socket], None]], str],
    protocol: ProbeProtocol,
) -> None:
    closed = threading.Event()

    def read_until_closed(connection: socket.socket) -> None:
        connection.settimeout(10)
        while connection.recv(1024):
            pass
        closed.set()

    endpoint = serve_once(read_until_closed)

    result = probe(endpoint, protocol, timeout_seconds=0.2)

    assert result is ProbeResult.SILENT
    assert closed.wait(timeout=10)


def test_probe_reports_closed_port_unreachable() -> None:
    result = probe(f"127.0.0.1:{find_free_port()}", REDIS, 0.2)

    assert result is ProbeResult.UNREACHABLE


def test_probe_accepts_pong_from_redis(
    serve_once: Callable[[Callable[[socket.socket], None]], str],
) -> None:
    received: list[bytes] = []

    def reply(connection: socket.socket) -> None:
        received.append(connection.recv(len(REDIS.request)))
        connection.sendall(b"+PONG\r\n")

    endpoint = serve_once(reply)

    result = probe(endpoint, REDIS, timeout_seconds=5)

    assert result is ProbeResult.RESPONDED
    assert received == [b"*1\r\n$4\r\nPING\r\n"]


@pytest.mark.parametrize(
    "reply",
    [
        b"-NOAUTH Authentication required.\r\n",
        b"-ERR unknown command 'PING'\r\n",
        b"-LOADING Redis is loading the dataset in memory\r\n",
    ],
    ids=["noauth", "err", "loading"],
)
def test_probe_accepts_error_reply_from_redis(
    serve_once: Callable[[Callable[[socket.socket], None]], str], reply: bytes
) -> None:
    endpoint = serve_once(reply_after_request(REDIS, reply))

    result = probe(endpoint, REDIS, timeout_seconds=5)

    assert result is ProbeResult.RESPONDED


@pytest.mark.parametrize(
    "reply",
    [b"+OK\r\n", b"-not an error code\r\n", b"$4\r\nPONG\r\n", HTTP_REPLY],
    ids=["other-status", "lower-case-error", "bulk-string", "http"],
)
def test_probe_rejects_other_reply_to_ping(
    serve_once: Callable[[Callable[[socket.socket], None]], str], reply: bytes
) -> None:
    endpoint = serve_once(reply_after_request(REDIS, reply))

    result = probe(endpoint, REDIS, timeout_seconds=5)

    assert result is ProbeResult.OTHER_PROTOCOL


def test_probe_accepts_kafka_reply_with_request_correlation_id(
    serve_once: Callable[[Callable[[socket.socket], None]], str],
) -> None:
    reply = kafka_reply(correlation_id_of(KAFKA.request))
    endpoint = serve_once(reply_after_request(KAFKA, reply))

    result = probe(endpoint, KAFKA, timeout_seconds=5)

    assert result is ProbeResult.RESPONDED


@pytest.mark.parametrize(
    "reply",
    [kafka_reply(correlation_id_of(KAFKA.request) + 1), HTTP_REPLY, KAFKA.request],
    ids=["other-correlation-id", "http", "echo"],
)
def test_probe_rejects_other_reply_to_api_versions(
    serve_once: Callable[[Callable[[socket.socket], None]], str], reply: bytes
) -> None:
    endpoint = serve_once(reply_after_request(KAFKA, reply))

    result = probe(endpoint, KAFKA, timeout_seconds=5)

    assert result is ProbeResult.OTHER_PROTOCOL


@pytest.mark.parametrize("protocol", [KAFKA, REDIS], ids=["kafka", "redis"])
def test_probe_rejects_connection_closed_without_reply(
    serve_once: Callable[[Callable[[socket.socket], None]], str],
    protocol: ProbeProtocol,
) -> None:
    endpoint = serve_once(lambda connection: None)

    result = probe(endpoint, protocol, timeout_seconds=5)

    assert result is ProbeResult.OTHER_PROTOCOL


def test_probe_reports_reply_cut_short_as_silent(
    serve_once: Callable[[Callable[[socket.socket], None]], str],
) -> None:
    done = threading.Event()

    def send_half_and_wait(connection: socket.socket) -> None:
        reply_after_request(KAFKA, kafka_reply(1)[:6])(connection)
        done.wait(timeout=10)

    endpoint = serve_once(send_half_and_wait)

    try:
        result = probe(endpoint, KAFKA, timeout_seconds=0.2)
    finally:
        done.set()

    assert result is ProbeResult.SILENT


def test_probe_stops_reading_reply_without_line_end(
    serve_once: Callable[[Callable[[socket.socket], None]], str],
) -> None:
    done = threading.Event()

    def send_long_line(connection: socket.socket) -> None:
        reply_after_request(REDIS, b"+" + b"x" * MAX_REPLY_BYTES)(connection)
        done.wait(timeout=10)

    endpoint = serve_once(send_long_line)

    try:
        result = probe(endpoint, REDIS, timeout_seconds=5)
    finally:
        done.set()

    assert result is ProbeResult.OTHER_PROTOCOL


@pytest.mark.parametrize(
    "reply",
    # A fatal alert record of TLS 1.2: handshake_failure.
    [b"\x15\x03\x03\x00\x02\x02\x28", b""],
    ids=["alert", "close"],
)
def test_probe_accepts_tls_listener_rejecting_plaintext(
    serve_once: Callable[[Callable[[socket.socket], None]], str], reply: bytes
) -> None:
    endpoint = serve_once(reply_after_request(KAFKA, reply))

    result = probe(endpoint, tls_listener(KAFKA), timeout_seconds=5)

    assert result is ProbeResult.RESPONDED


def test_probe_rejects_http_reply_for_tls_listener(
    serve_once: Callable[[Callable[[socket.socket], None]], str],
) -> None:
    endpoint = serve_once(reply_after_request(REDIS, HTTP_REPLY))

    result = probe(endpoint, tls_listener(REDIS), timeout_seconds=5)

    assert result is ProbeResult.OTHER_PROTOCOL


def test_kafka_request_is_api_versions_v0() -> None:
    size, api_key, api_version = struct.unpack(">ihh", KAFKA.request[:8])

    assert size == len(KAFKA.request) - 4
    assert api_key == 18
    assert api_version == 0
