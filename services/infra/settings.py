"""Settings of ``cartwheel infra`` and ``cartwheel topics``: the only env reads here.

``CARTWHEEL_INFRA_*`` choose where the local servers keep their pid files and
logs and which loopback ports they listen on; every command uses those ports
by default (:mod:`services.common.local_ports`). Setting
``CARTWHEEL_KAFKA_BOOTSTRAP`` or ``CARTWHEEL_REDIS_URL`` points Cartwheel at
servers that already exist, and ``infra up`` then starts nothing for that
server.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.local_ports import (
    LocalPortSettings,
    local_kafka_bootstrap,
    local_redis_url,
)
from services.common.settings import (
    KafkaSettings,
    NonBlankPath,
    RedisSettings,
    TopicSettings,
)

__all__ = ["InfraSettings"]


class InfraSettings(LocalPortSettings):
    """Location and ports of the local servers, and the external servers to use.

    The ports are those of :class:`LocalPortSettings`, which every command
    reads for its default broker and Redis URL.
    """

    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_INFRA_", frozen=True, allow_inf_nan=False
    )

    state_dir: NonBlankPath = Field(
        default=Path(".cartwheel"),
        description="a directory for pid files and logs",
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)

    @property
    def is_kafka_external(self) -> bool:
        """True when CARTWHEEL_KAFKA_BOOTSTRAP names a broker to use as it is.

        The address that ``infra up`` prints for the local broker is not
        external, so exporting it keeps ``infra down`` working.
        """
        local = local_kafka_bootstrap(self.kafka_port)
        return "bootstrap" in self.kafka.model_fields_set and (
            self.kafka.bootstrap != local
        )

    @property
    def is_redis_external(self) -> bool:
        """True when CARTWHEEL_REDIS_URL names a redis-server to use as it is.

        The URL that ``infra up`` prints for the local server is not external.
        """
        local = local_redis_url(self.redis_port)
        return "url" in self.redis.model_fields_set and (
            self.redis.url.get_secret_value() != local
        )
