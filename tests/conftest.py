"""Session fixtures: one private Tansu broker and one redis-server per test run.

Both listen on free loopback ports and are stopped when the session ends.
Tests get unique topic names and consumer groups from factories, because a
Tansu group keeps the settings of its first member even after it empties.
"""

from __future__ import annotations

import gc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from services.common.kafka import TopicSpec, create_topics
from services.common.settings import KafkaSettings, RedisSettings
from services.infra import find_free_port, start_broker, start_redis


@pytest.fixture(scope="session")
def infra_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("infra")


@pytest.fixture(scope="session")
def kafka_bootstrap(infra_dir: Path) -> Iterator[str]:
    server = start_broker(infra_dir, find_free_port())
    yield server.address
    # Clients that tests dropped without closing are destroyed now, while the
    # broker still responds, instead of retrying against a closed port at exit.
    gc.collect()
    server.stop()


@pytest.fixture(scope="session")
def redis_url(infra_dir: Path) -> Iterator[str]:
    server = start_redis(infra_dir, find_free_port())
    yield f"redis://{server.address}/0"
    server.stop()


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    return KafkaSettings(bootstrap=kafka_bootstrap)


@pytest.fixture
def redis_settings(redis_url: str) -> RedisSettings:
    """Redis settings with a key prefix of its own, so tests never share keys."""
    return RedisSettings(url=redis_url, key_prefix=f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Return a factory of names that no other test uses (topics, groups)."""

    def make(stem: str) -> str:
        return f"{stem}-{uuid.uuid4().hex[:10]}"

    return make


@pytest.fixture
def make_topic(
    kafka_settings: KafkaSettings, unique_name: Callable[[str], str]
) -> Callable[..., str]:
    """Return a factory that creates a fresh topic and returns its name."""

    def make(
        stem: str = "topic", partitions: int = 1, is_compacted: bool = False
    ) -> str:
        name = unique_name(stem)
        create_topics(kafka_settings, [TopicSpec(name, partitions, is_compacted)])
        return name

    return make
