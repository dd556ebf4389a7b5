"""Settings of the replay tool, read from ``CARTWHEEL_REPLAY_*`` variables.

The Kafka connection and topic names are the shared blocks, read from
``CARTWHEEL_KAFKA_*`` and ``CARTWHEEL_TOPIC_*``.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.settings import (
    KafkaSettings,
    LogLevel,
    NonBlankName,
    NonBlankPath,
    PlainIntegers,
    TopicSettings,
)
from services.replay.datasets import REPO_ROOT

__all__ = ["DEFAULT_DATA_DIR", "Settings"]

DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"


class Settings(PlainIntegers, BaseSettings):
    """Settings of ``cartwheel replay``: dataset folder and producer tuning."""

    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_REPLAY_", frozen=True, allow_inf_nan=False
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    data_dir: NonBlankPath = Field(
        default=DEFAULT_DATA_DIR,
        description="a folder that contains one sub-folder per public dataset. "
        "The default is resolved from the checkout's root, but a relative value "
        "you set is resolved from the current folder",
    )
    linger_ms: int = Field(
        default=20,
        ge=0,
        le=1000,
        description="an integer from 0 to 1000 (milliseconds)",
    )
    queue_max_messages: int = Field(
        default=500_000,
        ge=1000,
        le=10_000_000,
        description="an integer from 1000 to 10000000",
    )
    generated_seed: int = Field(
        default=46,
        ge=0,
        description="a non-negative integer",
    )
    log_level: LogLevel = "INFO"
    service_name: NonBlankName = Field(
        default="replay",
        min_length=1,
        max_length=64,
        description="1 to 64 characters, not all blank",
    )
