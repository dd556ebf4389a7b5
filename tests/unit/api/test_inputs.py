from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request

from services.api import inputs
from services.api.inputs import read_capped


def _request(content_length: str, *chunks: bytes) -> Request:
    """Return a request that sends ``chunks`` and then waits for ever."""
    pending = list(chunks)

    async def receive() -> dict[str, Any]:
        if pending:
            return {"type": "http.request", "body": pending.pop(0), "more_body": True}
        await asyncio.Event().wait()
        raise AssertionError("the body was read past its last chunk")

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/events",
        "headers": [(b"content-length", content_length.encode("latin-1"))],
    }
    return Request(scope, receive)


def test_read_capped_stops_waiting_when_declared_too_large(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(inputs, "DECLARED_TOO_LARGE_WAIT_SECONDS", 0.05)
    request = _request("99999999999999999999", b'{"user_id": "u1"')

    # Without the cap on waiting, the read would wait for the rest for ever.
    raw, size = asyncio.run(asyncio.wait_for(read_capped(request, 16), 5.0))

    assert raw == b'{"user_id": "u1"'
    assert size == "99999999999999999999 bytes"


def test_read_capped_keeps_first_bytes() -> None:
    request = _request("40", b"a" * 20, b"b" * 20)

    raw, size = asyncio.run(read_capped(request, 16))

    assert raw == b"a" * 16
    assert size == "40 bytes"


def test_read_capped_ignores_non_ascii_content_length() -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/events",
        "headers": [(b"content-length", "²".encode("latin-1"))],
    }

    raw, size = asyncio.run(read_capped(Request(scope, receive), 16))

    assert raw == b"{}"
    assert size is None
