"""Settings of the catalog consumer, read from ``CARTWHEEL_FEATURES_*``.

The shared blocks come from ``CARTWHEEL_KAFKA_*``, ``CARTWHEEL_REDIS_*`` and
``CARTWHEEL_TOPIC_*``.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.settings import (
    MAX_REDIS_TTL_SECONDS,
    ConsumerGroupId,
    KafkaSettings,
    LogLevel,
    MetricsHost,
    PlainIntegers,
    RedisSettings,
    TopicSettings,
)

__all__ = ["CatalogSettings"]


class CatalogSettings(PlainIntegers, BaseSettings):
    """Settings of the catalog consumer, which copies ``catalog`` into Redis."""

    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_FEATURES_", frozen=True, allow_inf_nan=False
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    group_id: ConsumerGroupId = Field(
        default="cartwheel-catalog",
        min_length=1,
        description="the consumer group of the catalog consumers",
    )
    batch_size: int = Field(
        default=1000, ge=1, le=100_000, description="messages per consume() call"
    )
    poll_timeout_seconds: float = Field(
        default=1.0,
        gt=0.0,
        le=60.0,
        description="seconds a poll waits for the first message of a batch",
    )
    catalog_ttl_seconds: int = Field(
        default=30 * 86_400,
        ge=3600,
        le=MAX_REDIS_TTL_SECONDS,
        description="lifetime of a catalog record after its last update or "
        "event, in seconds; a Redis expiry, capped at ten years so that Redis "
        "accepts it",
    )
    catalog_reload_check_seconds: float = Field(
        default=30.0,
        gt=0.0,
        le=3600.0,
        description="seconds between checks of the catalog marker in Redis; "
        "partitions without it are read again from the start of the topic",
    )
    retry_max_seconds: float = Field(
        default=5.0,
        gt=0.0,
        le=600.0,
        description="maximum backoff between retries, in seconds",
    )
    metrics_host: MetricsHost = "127.0.0.1"
    metrics_port: int = Field(
        default=9102, ge=0, le=65_535, description="port of /metrics; 0 turns it off"
    )
    log_level: LogLevel = "INFO"
