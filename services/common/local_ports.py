"""The ports of the local servers, which also set every command's default servers.

``CARTWHEEL_INFRA_KAFKA_PORT`` and ``CARTWHEEL_INFRA_REDIS_PORT`` choose the
loopback ports of the Tansu broker and redis-server that ``cartwheel infra
up`` starts. Every other command reads them too: while
``CARTWHEEL_KAFKA_BOOTSTRAP`` (or ``CARTWHEEL_REDIS_URL``) is unset, its
default is the local server at that port. So changing a port moves all
commands together, and none of them silently uses the default port, where
the servers of another checkout may listen. An explicit
``CARTWHEEL_KAFKA_BOOTSTRAP`` or ``CARTWHEEL_REDIS_URL`` always wins, so
deployments that set both, such as compose and Kubernetes, never read the
ports.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.errors import InvalidSettingsError
from services.common.setting_integers import PlainIntegers
from services.common.setting_loader import describe_validation_error

__all__ = [
    "LOCAL_HOST",
    "LocalPortSettings",
    "local_kafka_bootstrap",
    "local_port",
    "local_redis_url",
]

LOCAL_HOST = "127.0.0.1"
"""The loopback address that the local servers listen on."""


class LocalPortSettings(PlainIntegers, BaseSettings):
    """The loopback ports of the broker and redis-server that ``infra up`` starts."""

    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_INFRA_", frozen=True, allow_inf_nan=False
    )

    kafka_port: int = Field(
        default=19092,
        ge=1024,
        le=65535,
        description="a TCP port from 1024 to 65535 for the local broker, also "
        "the port of the default CARTWHEEL_KAFKA_BOOTSTRAP",
    )
    redis_port: int = Field(
        default=16379,
        ge=1024,
        le=65535,
        description="a TCP port from 1024 to 65535 for the local redis-server, "
        "also the port of the default CARTWHEEL_REDIS_URL",
    )


def local_kafka_bootstrap(port: int) -> str:
    """Return the bootstrap address of the local broker on ``port``."""
    return f"{LOCAL_HOST}:{port}"


def local_redis_url(port: int) -> str:
    """Return the URL of database 0 of the local redis-server on ``port``."""
    return f"redis://{LOCAL_HOST}:{port}/0"


def local_port(name: Literal["kafka_port", "redis_port"]) -> int | None:
    """Return the port that its ``CARTWHEEL_INFRA_*`` variable sets, or None.

    Only the variable of ``name`` is read, so an invalid value of the other
    port stops only the commands that use it.

    Raises:
        InvalidSettingsError: the variable is not a port from 1024 to 65535.
    """
    # A value given here is not read from the environment.
    others = {
        field: info.default
        for field, info in LocalPortSettings.model_fields.items()
        if field != name
    }
    try:
        ports = LocalPortSettings(**others)
    except ValidationError as exc:
        raise InvalidSettingsError(
            describe_validation_error(exc, LocalPortSettings)
        ) from exc
    if name not in ports.model_fields_set:
        return None
    port: int = getattr(ports, name)
    return port
