"""Settings of the HTTP API, read from ``CARTWHEEL_API_*`` variables."""

from __future__ import annotations

from pydantic import ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.settings import (
    KafkaSettings,
    ListenHost,
    LogLevel,
    NonBlankPath,
    PlainIntegers,
    RedisSettings,
    TopicSettings,
)
from services.learner.settings import DEFAULT_CHECKPOINT_DIR, check_checkpoint_key
from services.scorer.settings import ScorerSettings

__all__ = ["ApiSettings", "SignalSettings"]


class SignalSettings(PlainIntegers):
    """The location and reloading of the learner checkpoints for on-demand slates.

    The API only reads the learner's checkpoint files. It never writes them
    and never takes the learner's lock file.
    """

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    is_enabled: bool = Field(
        default=True,
        description="blend the online signals of the learner's newest "
        "checkpoint into on-demand slates",
    )
    checkpoint_dir: NonBlankPath = Field(
        default=DEFAULT_CHECKPOINT_DIR,
        description="the learner's checkpoint folder, as in "
        "CARTWHEEL_LEARNER_CHECKPOINT_DIR; read only",
    )
    checkpoint_key: SecretStr | None = Field(
        default=None,
        description="the learner's CARTWHEEL_LEARNER_CHECKPOINT_KEY, to verify "
        "its checkpoints; unset when the learner has none",
    )
    instance_name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_\-]{1,64}$",
        description="1-64 letters, digits, '_' or '-': read only the checkpoint "
        "of this CARTWHEEL_LEARNER_INSTANCE_NAME; unset reads the most recently "
        "written *.ckpt file of the folder",
    )
    reload_interval_seconds: float = Field(
        default=5.0,
        gt=0.0,
        le=300.0,
        description="seconds between checks of the checkpoint's modification "
        "time; a changed file is loaded again",
    )

    @field_validator("checkpoint_key")
    @classmethod
    def _check_checkpoint_key(cls, value: SecretStr | None) -> SecretStr | None:
        return check_checkpoint_key(value)


class ApiSettings(PlainIntegers, BaseSettings):
    """The API's listening address, its dependencies and its behaviour."""

    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_API_",
        env_nested_delimiter="__",
        frozen=True,
        allow_inf_nan=False,
    )

    host: ListenHost = Field(
        default="127.0.0.1",
        description="an IP address or host name (RFC 1123: dot-separated labels "
        "of letters, digits and '-', at most 253 characters) to listen on; "
        "0.0.0.0 listens on every interface",
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
    is_session_index_enabled: bool = Field(
        default=True,
        description="follow the events topic into a session-kNN index for "
        "on-demand slates; at start it reads back "
        "CARTWHEEL_SCORER_CANDIDATES__SESSION_WARMUP_EVENTS events per partition",
    )
    signals: SignalSettings = Field(default_factory=SignalSettings)
    ingest_timeout_seconds: float = Field(
        default=5.0,
        gt=0.0,
        le=60.0,
        description=(
            "how long an event POST waits for the broker's acknowledgement; a "
            "stop waits as long for the posts in flight, so keep it well under "
            "the 30 s that Kubernetes and compose allow a stop"
        ),
    )
    readiness_timeout_seconds: float = Field(
        default=2.0,
        gt=0.0,
        le=30.0,
        description="seconds that /readyz waits for Redis and for the broker "
        "each, and that an event POST waits for the broker's topic list",
    )
    readiness_failure_seconds: float = Field(
        default=30.0,
        gt=0.0,
        le=3600.0,
        description="seconds that /readyz returns 503 after a delivery of an "
        "event or a dead letter failed or went unconfirmed, unless a later "
        "delivery succeeds first",
    )
    log_level: LogLevel = "INFO"
