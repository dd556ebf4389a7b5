"""Starting the API server: failures that need no broker or Redis."""

from __future__ import annotations

import socket

import pytest

from services.api.server import _listen, serve
from services.api.settings import ApiSettings
from services.common.errors import InvalidSettingsError


def test_serve_names_port_variable_when_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(InvalidSettingsError) as caught:
            serve(ApiSettings(host="127.0.0.1", port=port))

    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "CARTWHEEL_API_PORT" in str(caught.value)


def test_serve_names_host_variable_for_foreign_address() -> None:
    with pytest.raises(InvalidSettingsError) as caught:
        serve(ApiSettings(host="203.0.113.7", port=1))

    assert "CARTWHEEL_API_HOST" in str(caught.value)


def test_listen_binds_every_address_of_a_name(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stream = (socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
    addresses = [
        (socket.AF_INET, *stream, ("127.0.0.1", port)),
        (socket.AF_INET6, *stream, ("::1", port, 0, 0)),
    ]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: addresses)

    listeners = _listen("localhost", port)
    try:
        bound = [listener.getsockname()[:2] for listener in listeners]
    finally:
        for listener in listeners:
            listener.close()

    assert bound == [("127.0.0.1", port), ("::1", port)]
