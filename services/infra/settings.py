"""Settings of ``cartwheel infra`` and ``cartwheel topics``: the only env reads here.

``CARTWHEEL_INFRA_*`` choose where the local servers keep their pid files and
logs and which loopback ports they listen on. Setting ``CARTWHEEL_KAFKA_BOOTSTRAP``
or ``CARTWHEEL_REDIS_URL`` points Cartwheel at servers that already exist, and
``infra up`` then starts nothing for that server.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.settings import (
    KafkaSettings,
    NonBlankPath,
    RedisSettings,
    TopicSettings,
)

__all__ = ["InfraSettings"]

_PORT_FORM = "a TCP port from 1024 to 65535"
_LOCAL_HOST = "127.0.0.1"


class InfraSettings(BaseSettings):
    """Location and ports of the local servers, and the external servers to use."""

    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_INFRA_", frozen=True, allow_inf_nan=False
    )

    state_dir: NonBlankPath = Field(
        default=Path(".cartwheel"),
        description="a directory for pid files and logs",
    )
    kafka_port: int = Field(default=19092, ge=1024, le=65535, description=_PORT_FORM)
    redis_port: int = Field(default=16379, ge=1024, le=65535, description=_PORT_FORM)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)

    @property
    def is_kafka_external(self) -> bool:
        """True when CARTWHEEL_KAFKA_BOOTSTRAP names a broker to use as it is.

        The address that ``infra up`` prints for the local broker is not
        external, so exporting it keeps ``infra down`` working.
        """
        local = f"{_LOCAL_HOST}:{self.kafka_port}"
        return "bootstrap" in self.kafka.model_fields_set and (
            self.kafka.bootstrap != local
        )

    @property
    def is_redis_external(self) -> bool:
        """True when CARTWHEEL_REDIS_URL names a redis-server to use as it is.

        The URL that ``infra up`` prints for the local server is not external.
        """
        local = f"redis://{_LOCAL_HOST}:{self.redis_port}/0"
        return "url" in self.redis.model_fields_set and (
            self.redis.url.get_secret_value() != local
        )
