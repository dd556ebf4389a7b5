"""Settings of ``cartwheel infra`` and ``cartwheel topics``: the only env reads here.

``CARTWHEEL_INFRA_*`` choose where the local servers keep their pid files,
logs and Redis data, and which loopback ports they listen on; every command
uses those ports by default (:mod:`services.common.local_ports`). Setting
``CARTWHEEL_KAFKA_BOOTSTRAP`` or ``CARTWHEEL_REDIS_URL`` points Cartwheel at
servers that already exist, and ``infra up`` then starts nothing for that
server.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
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
        description="a directory for pid files, logs and the local Redis data",
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)

    @model_validator(mode="after")
    def _check_ports_differ(self) -> InfraSettings:
        # With one port for both, Tansu would start and redis-server would
        # then find its port taken, leaving the broker behind. An external
        # server does not use its port, so it cannot clash.
        if self.kafka_port != self.redis_port:
            return self
        if self.is_kafka_external or self.is_redis_external:
            return self

        # The error goes to a variable that was set, rather than to a
        # default that the user never chose.
        at_fault, other = "redis_port", "kafka_port"
        if at_fault not in self.model_fields_set:
            at_fault, other = other, at_fault
        default = "" if other in self.model_fields_set else "the default of "
        message = (
            "expected a TCP port from 1024 to 65535 other than "
            f"{getattr(self, other)}, which {default}"
            f"CARTWHEEL_INFRA_{other.upper()} sets, because the local broker "
            "and redis-server cannot listen on one port"
        )

        raise ValidationError.from_exception_data(
            type(self).__name__,
            [
                InitErrorDetails(
                    type=PydanticCustomError(
                        "value_error", "{message}", {"message": message}
                    ),
                    loc=(at_fault,),
                    input=getattr(self, at_fault),
                )
            ],
        )

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
