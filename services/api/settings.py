"""Settings of the HTTP API, read from ``CARTWHEEL_API_*`` variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.settings import KafkaSettings, RedisSettings, TopicSettings
from services.scorer.settings import ScorerSettings

__all__ = ["ApiSettings"]


class ApiSettings(BaseSettings):
    """The API's listening address, its dependencies and its behaviour."""

    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_API_",
        env_nested_delimiter="__",
        frozen=True,
        allow_inf_nan=False,
    )

    host: str = Field(
        default="127.0.0.1",
        pattern=r"^\S+$",
        description="an IP address or host name to listen on; 0.0.0.0 listens on "
        "every interface",
    )
    port: int = Field(default=8080, ge=1, le=65535, description="TCP port")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    scorer: ScorerSettings = Field(default_factory=ScorerSettings)
    is_on_demand_enabled: bool = Field(
        default=True,
        description="compute a slate for a user who has none stored",
    )
    ingest_timeout_seconds: float = Field(
        default=5.0,
        gt=0.0,
        le=60.0,
        description="how long an event POST waits for the broker's acknowledgement",
    )
    readiness_timeout_seconds: float = Field(
        default=2.0,
        gt=0.0,
        le=30.0,
        description="seconds that /readyz waits for Redis and for the broker "
        "each, and that an event POST waits for the broker's topic list",
    )
    log_level: str = Field(
        default="INFO",
        pattern=r"^(DEBUG|INFO|WARNING|ERROR)$",
        description="DEBUG, INFO, WARNING or ERROR",
    )
