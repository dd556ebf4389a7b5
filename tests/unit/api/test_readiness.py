"""/readyz against a Redis that accepts connections but never replies."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from services.api.server import build_app
from services.api.settings import ApiSettings
from services.common.settings import KafkaSettings, RedisSettings


@pytest.fixture
def silent_redis_port() -> Iterator[int]:
    # The kernel completes the handshake for the backlog, and nothing reads.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def test_readyz_keeps_its_timeout_on_silent_redis(silent_redis_port: int) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        broker_port = closed.getsockname()[1]
    settings = ApiSettings(
        redis=RedisSettings(url=f"redis://127.0.0.1:{silent_redis_port}/0"),
        kafka=KafkaSettings(bootstrap=f"127.0.0.1:{broker_port}"),
        readiness_timeout_seconds=0.5,
        is_on_demand_enabled=False,
    )
    app = build_app(settings)

    async def get_readyz() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api"
        ) as client:
            return await client.get("/readyz")

    started = time.monotonic()
    answer = asyncio.run(get_readyz())
    elapsed = time.monotonic() - started

    assert answer.status_code == 503
    assert answer.json()["redis"].startswith("unreachable")
    # 0.5 s for Redis and 0.5 s for the broker, with room for a slow machine.
    assert elapsed < 3.0
