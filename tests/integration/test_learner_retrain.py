"""Retrain requests in a real redis-server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis

from services.common.retrain import request_retrain, take_retrain_request
from services.common.settings import RedisSettings

pytestmark = pytest.mark.integration

DETECTED_AT = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_take_retrain_request_returns_request_once(
    redis_client: redis.Redis, redis_settings: RedisSettings
) -> None:
    prefix = redis_settings.key_prefix
    request_retrain(redis_client, prefix, "drift model=cart_add", DETECTED_AT)

    first = take_retrain_request(redis_client, prefix)
    second = take_retrain_request(redis_client, prefix)

    assert first is not None
    assert first.reason == "drift model=cart_add"
    assert first.detected_at == DETECTED_AT
    assert first.count == 1
    assert second is None


def test_request_retrain_merges_into_pending_request(
    redis_client: redis.Redis, redis_settings: RedisSettings
) -> None:
    prefix = redis_settings.key_prefix
    request_retrain(redis_client, prefix, "first", DETECTED_AT)
    request_retrain(redis_client, prefix, "second", DETECTED_AT + timedelta(hours=1))

    request = take_retrain_request(redis_client, prefix)

    assert request is not None
    assert request.count == 2
    assert request.reason == "second"
    assert request.detected_at == DETECTED_AT


def test_request_retrain_sets_ttl(
    redis_client: redis.Redis, redis_settings: RedisSettings
) -> None:
    request_retrain(redis_client, redis_settings.key_prefix, "drift", DETECTED_AT)

    ttl = redis_client.ttl(f"{redis_settings.key_prefix}:retrain:request")

    assert ttl > 0


def test_request_retrain_rejects_naive_time(
    redis_client: redis.Redis, redis_settings: RedisSettings
) -> None:
    with pytest.raises(ValueError, match="naive"):
        request_retrain(
            redis_client, redis_settings.key_prefix, "drift", datetime(2026, 3, 2)
        )
