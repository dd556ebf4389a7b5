"""Settings of the hot-path consumer, read from ``CARTWHEEL_HOTPATH_*``.

The shared blocks come from ``CARTWHEEL_KAFKA_*``, ``CARTWHEEL_REDIS_*`` and
``CARTWHEEL_TOPIC_*``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.redis_features import FeatureStoreConfig
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

__all__ = ["HotPathSettings", "StageNames"]


def _check_stage_names(names: list[str]) -> list[str]:
    # Without a stage the hot path would apply and commit every event and
    # publish no slate, and since each event is then marked applied, a replay
    # of those events would skip them as duplicates. A stage listed twice
    # would run twice on every batch, as a scoring stage publishing two slates
    # per event.
    if not names:
        raise ValueError("the list is empty, so no event would get a slate")
    for name in names:
        module, colon, function = name.partition(":")
        if not (
            colon
            and all(part.isidentifier() for part in module.split("."))
            and function.isidentifier()
        ):
            raise ValueError(f"{name!r} is not a 'module:function' name")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(
            f"{', '.join(repeated)} is listed more than once, which would run "
            "the stage twice on every batch"
        )
    return names


StageNames = Annotated[list[str], AfterValidator(_check_stage_names)]
"""The stage factories of ``CARTWHEEL_HOTPATH_STAGES``: one or more, each once."""


class HotPathSettings(PlainIntegers, BaseSettings):
    """Settings of the hot path: consumption, features, retries and metrics."""

    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_HOTPATH_", frozen=True, allow_inf_nan=False
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    group_id: ConsumerGroupId = Field(
        default="cartwheel-hotpath",
        min_length=1,
        description="the consumer group shared by every hot-path instance",
    )
    batch_size: int = Field(
        default=500, ge=1, le=100_000, description="messages per consume() call"
    )
    poll_timeout_seconds: float = Field(
        default=0.5,
        gt=0.0,
        le=60.0,
        description="seconds a poll waits for the first message of a batch",
    )
    fetch_wait_ms: int = Field(
        default=10,
        ge=0,
        le=10_000,
        description="broker-side fetch wait in ms; sets the latency floor",
    )
    retry_initial_seconds: float = Field(
        default=0.2, gt=0.0, le=60.0, description="first backoff after a failure"
    )
    retry_max_seconds: float = Field(
        default=5.0,
        gt=0.0,
        le=600.0,
        description="maximum backoff between retries, in seconds",
    )
    stage_attempts: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="attempts of a batch that fails with an error of the code, "
        "not of Redis or Kafka, before its events run one at a time; an event "
        "that fails as often alone goes to the dead-letter topic",
    )
    is_emitting_training_examples: bool = Field(
        default=True,
        description="publish a point-in-time training example per new event",
    )
    stages: StageNames = Field(
        default=["services.scorer.factory:build_learning_and_scoring"],
        description="JSON list of one or more distinct 'module:function' stage "
        "factories, such as services.scorer.factory:build_learning_and_scoring, "
        "run in order; each function takes the HotPathSettings and a "
        "redis.Redis client",
    )
    gc_threshold: int = Field(
        default=100_000,
        ge=0,
        le=10_000_000,
        description="allocations between young-generation garbage collections "
        "in the hot-path process; 0 keeps Python's default",
    )
    metrics_host: MetricsHost = "127.0.0.1"
    metrics_port: int = Field(
        default=9101, ge=0, le=65_535, description="port of /metrics; 0 turns it off"
    )
    log_level: LogLevel = "INFO"
    user_ttl_seconds: int = Field(
        default=9 * 86_400,
        ge=3600,
        le=MAX_REDIS_TTL_SECONDS,
        description="user state lifetime after activity, in seconds; a Redis "
        "expiry, capped at ten years so that Redis accepts it",
    )
    item_ttl_seconds: int = Field(
        default=14 * 86_400,
        ge=3600,
        le=MAX_REDIS_TTL_SECONDS,
        description="item state lifetime after activity, in seconds; a Redis "
        "expiry, capped at ten years so that Redis accepts it",
    )
    dedupe_size: int = Field(
        default=64, ge=1, le=1024, description="event ids remembered per user"
    )
    max_pairs: int = Field(
        default=50, ge=1, le=1000, description="items kept per item-to-item list"
    )

    def feature_config(self) -> FeatureStoreConfig:
        """Return the feature store tuning these settings select."""
        return FeatureStoreConfig(
            user_ttl_seconds=self.user_ttl_seconds,
            item_ttl_seconds=self.item_ttl_seconds,
            dedupe_size=self.dedupe_size,
            max_pairs=self.max_pairs,
        )
