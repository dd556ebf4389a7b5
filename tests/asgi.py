"""Send requests to an ASGI application in this process, as a client would."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

__all__ = ["call_app"]


def call_app(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """Send one request to ``app`` on a fresh event loop and return the response.

    An error that the application does not handle is raised here, so a test
    sees its traceback rather than a 500 response.
    """

    async def request() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api"
        ) as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(request())
