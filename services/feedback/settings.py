"""Settings of the feedback app, read from ``CARTWHEEL_FEEDBACK_*`` variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.settings import (
    MAX_REDIS_TTL_SECONDS,
    KafkaSettings,
    LogLevel,
    MetricsHost,
    NonBlankPath,
    PlainIntegers,
    RedisSettings,
    TopicSettings,
)

__all__ = ["FeedbackSettings"]


class FeedbackSettings(PlainIntegers, BaseSettings):
    """Settings of the feedback join: windows, per-user caps, batching and /metrics."""

    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_FEEDBACK_", frozen=True, allow_inf_nan=False
    )

    app_id: str = Field(
        default="cartwheel-feedback",
        pattern=r"^[A-Za-z0-9._\-]{1,100}$",
        description="Faust app id, also the consumer group id",
    )
    attribution_window_seconds: float = Field(
        default=1800.0,
        gt=0,
        le=7 * 86400,
        description="event-time seconds after a slate's trigger event during "
        "which the user's events are credited to the slate",
    )
    window_seconds: int = Field(
        default=300,
        ge=10,
        le=86400,
        description="width of the tumbling windows that count outcomes, in seconds",
    )
    retention_seconds: int = Field(
        default=7 * 86400,
        ge=600,
        le=MAX_REDIS_TTL_SECONDS,
        description="how long window counts are kept in Redis, in seconds; a "
        "Redis expiry, capped at ten years so that Redis accepts it",
    )
    max_recent_events: int = Field(
        default=50, ge=2, le=1000, description="events kept per user for the join"
    )
    max_recent_slates: int = Field(
        default=40, ge=1, le=1000, description="slates kept per user for the join"
    )
    batch_size: int = Field(
        default=500, ge=1, le=10000, description="messages applied per Redis round trip"
    )
    batch_wait_seconds: float = Field(
        default=0.1, gt=0, le=10, description="maximum wait to fill a batch, in seconds"
    )
    commit_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        le=600,
        description="seconds between offset commits; what a crash redelivers",
    )
    # A clean stop leaves the consumer group and commits offsets, which takes
    # seconds (an estimate: about 2 s with a local broker), so a limit under
    # 5 s would end stops that are going well. A stop gives up on a frozen
    # broker after 10 s and ends about a second later (see transport.py).
    stop_timeout_seconds: float = Field(
        default=20.0,
        ge=5,
        le=3600,
        description="seconds a stop on SIGTERM or SIGINT may take; a worker "
        "still running then exits with status 2. The stop gives up on a broker "
        "that does not respond after 10 s, so below about 12 s a frozen broker "
        "ends the stop this way",
    )
    retry_initial_seconds: float = Field(
        default=0.2, gt=0.0, le=60.0, description="first backoff after a Redis failure"
    )
    retry_max_seconds: float = Field(
        default=5.0,
        gt=0.0,
        le=600.0,
        description="maximum backoff between retries of a batch, in seconds",
    )
    # The export subtracts the span from the current datetime, which raises
    # OverflowError for a span that reaches back before year 1.
    ratio_lookback_seconds: int = Field(
        default=3600,
        ge=60,
        le=MAX_REDIS_TTL_SECONDS,
        description="span of the exported outcome ratios, in seconds; counts "
        "live at most ten years in Redis, so the span is capped there too",
    )
    ratio_refresh_seconds: float = Field(
        default=15.0, gt=0, le=3600, description="period of the ratio export"
    )
    metrics_host: MetricsHost = "127.0.0.1"
    metrics_port: int = Field(
        default=9105, ge=0, le=65535, description="port of /metrics; 0 turns it off"
    )
    data_dir: NonBlankPath = Field(
        default=Path(".cartwheel/feedback"),
        description="a folder for the Faust worker's local files",
    )
    log_level: LogLevel = "INFO"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
