from __future__ import annotations

from pathlib import Path

import pytest
import redis

from services.common.settings import RedisSettings
from services.hotpath.settings import HotPathSettings
from services.learner.factory import build_learning_stage


@pytest.mark.integration
def test_build_learning_stage_uses_hot_path_redis_prefix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_client: redis.Redis
) -> None:
    monkeypatch.setenv("CARTWHEEL_LEARNER_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("CARTWHEEL_LEARNER_CART_HORIZON_SECONDS", "900")
    hotpath = HotPathSettings(redis=RedisSettings(key_prefix="shop7"))

    stage = build_learning_stage(hotpath, redis_client)

    assert stage._settings.redis.key_prefix == "shop7"
    assert stage._settings.cart_horizon_seconds == 900.0
    assert stage.checkpoint_path.parent == tmp_path
