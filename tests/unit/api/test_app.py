"""The API's request metrics, with stub clients: no broker or Redis is reached."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from prometheus_client import REGISTRY

from services.api.app import create_app
from services.api.settings import ApiSettings


class _BrokenRedis:
    def get(self, key: str) -> Any:
        raise RuntimeError("storage failed")


def _count(status: str) -> float:
    value = REGISTRY.get_sample_value(
        "cartwheel_api_request_seconds_count",
        {
            "route": "/v1/users/{user_id}/slates/{surface}",
            "method": "GET",
            "status": status,
        },
    )
    return value or 0.0


async def _get(app: Any, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        return await client.get(path)


def test_unhandled_error_is_counted_as_500() -> None:
    app = create_app(
        ApiSettings(is_on_demand_enabled=False),
        redis_client=_BrokenRedis(),  # type: ignore[arg-type]
        producer=object(),  # type: ignore[arg-type]
    )
    before = _count("500")

    answer = asyncio.run(_get(app, "/v1/users/u1/slates/products"))

    assert answer.status_code == 500
    assert _count("500") == before + 1
