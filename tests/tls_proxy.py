"""A TLS-terminating proxy on 127.0.0.1 that requires client certificates.

Tansu speaks only plaintext, so tests of mutual TLS put this proxy in front
of it. The proxy completes the TLS handshake and rejects a client without a
certificate signed by the trusted CA. It then copies bytes both ways between
the client and the broker. Kafka clients learn broker addresses from
metadata, so the broker must advertise the proxy's port.
"""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path
from types import TracebackType

__all__ = ["TlsProxy"]


class TlsProxy:
    """Accept TLS on a free loopback port and forward plaintext to ``target``.

    Attributes:
        port: the port the proxy listens on.
        rejections: the error of each handshake the proxy rejected.
    """

    def __init__(
        self,
        target: tuple[str, int],
        *,
        certificate: Path,
        key: Path,
        client_ca: Path,
        port: int = 0,
    ) -> None:
        self._target = target
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(certificate, key)
        self._context.load_verify_locations(cafile=client_ca)
        self._context.verify_mode = ssl.CERT_REQUIRED
        self._listener = socket.create_server(("127.0.0.1", port))
        # accept() is not woken when another thread closes the socket, so it
        # wakes up on its own to check whether the proxy is closing.
        self._listener.settimeout(0.1)
        self._closing = threading.Event()
        self.port = int(self._listener.getsockname()[1])
        self.rejections: list[str] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def __enter__(self) -> TlsProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop accepting and close every forwarded connection."""
        self._closing.set()
        self._accepting.join(timeout=5)
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _close(sock)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(10)
        try:
            secure = self._context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            with self._lock:
                self.rejections.append(str(exc))
            _close(client)
            return
        secure.settimeout(None)
        try:
            upstream = socket.create_connection(self._target, timeout=10)
        except OSError:
            _close(secure)
            return
        upstream.settimeout(None)
        with self._lock:
            self._sockets += [secure, upstream]
        threading.Thread(target=_copy, args=(upstream, secure), daemon=True).start()
        _copy(secure, upstream)


def _copy(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes from ``source`` to ``sink`` until either side closes."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
