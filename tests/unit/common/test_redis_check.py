from __future__ import annotations

from typing import Any

import pytest
import redis

from services.common.errors import InfrastructureError
from services.common.redis_check import verify_redis
from services.common.settings import RedisSettings


def test_verify_redis_turns_unexpected_reply_into_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail_connection(*_: Any, **__: Any) -> None:
        raise redis.exceptions.ResponseError(
            "unknown subcommand 'MAINT_NOTIFICATIONS'. Try CLIENT HELP."
        )

    monkeypatch.setattr(redis.ConnectionPool, "get_connection", fail_connection)

    with pytest.raises(InfrastructureError) as raised:
        verify_redis(RedisSettings(url="redis://:hunter2@127.0.0.1:26679/0"))

    assert str(raised.value) == (
        "Redis failed the start check of "
        "CARTWHEEL_REDIS_URL='redis://:**********@127.0.0.1:26679/0': "
        "ResponseError: unknown subcommand 'MAINT_NOTIFICATIONS'. Try CLIENT "
        "HELP; check the URL's query options, the user's ACL and the server's "
        "version"
    )
