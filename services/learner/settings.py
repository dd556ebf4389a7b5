"""Settings of the online-learning stage, read from ``CARTWHEEL_LEARNER_*``.

The shared Redis block is read from ``CARTWHEEL_REDIS_*``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.settings import NonBlankPath, PlainIntegers, RedisSettings
from services.replay.settings import DEFAULT_DATA_DIR

__all__ = ["DEFAULT_CHECKPOINT_DIR", "LearnerSettings", "check_checkpoint_key"]

DEFAULT_CHECKPOINT_DIR = Path(".cartwheel/learner")
"""The default folder that learners write checkpoints to and the API reads."""


def check_checkpoint_key(value: SecretStr | None) -> SecretStr | None:
    """Reject a blank checkpoint key.

    An empty key would sign every checkpoint with a key anyone can guess, and
    the start-up warning about unsigned checkpoints would not show.
    """
    if value is not None and not value.get_secret_value().strip():
        raise ValueError("expected a non-empty secret, or leave the variable unset")
    return value


class LearnerSettings(PlainIntegers, BaseSettings):
    """Settings of the online models: learning, labels, evaluation, checkpoints."""

    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_LEARNER_", frozen=True, allow_inf_nan=False
    )

    redis: RedisSettings = Field(default_factory=RedisSettings)
    data_dir: NonBlankPath = Field(
        default=DEFAULT_DATA_DIR,
        description="a folder with one sub-folder per dataset, for 'learner "
        "evaluate'. The default is resolved from the checkout's root, but a "
        "relative value you set is resolved from the current folder",
    )
    is_enabled: bool = Field(
        default=True,
        description="learn from events; when false the stage only serves signals",
    )
    cart_horizon_seconds: float = Field(
        default=1800.0,
        gt=0.0,
        le=7 * 86_400.0,
        description="event-time seconds after a click within which a cart add counts",
    )
    purchase_horizon_seconds: float = Field(
        default=86_400.0,
        gt=0.0,
        le=30 * 86_400.0,
        description="event-time seconds after a cart add in which a purchase counts",
    )
    allowed_lateness_seconds: float = Field(
        default=60.0,
        ge=0.0,
        le=86_400.0,
        description="seconds an outcome may trail the watermark and still count",
    )
    # A crash replays only the batches after the last committed offset, whose
    # event times sit near the watermark, so an hour is ample. Every id costs
    # Redis memory for this long.
    dedupe_horizon_seconds: float = Field(
        default=3600.0,
        gt=0.0,
        le=7 * 86_400.0,
        description="event-time seconds behind the watermark that applied "
        "event ids are remembered",
    )
    max_pending_per_pair: int = Field(
        default=32, ge=1, le=10_000, description="pending examples per user and item"
    )
    max_pending_per_task: int = Field(
        default=100_000,
        ge=1,
        le=100_000_000,
        description=(
            "pending examples per task and partition, about 820 bytes each in "
            "Redis; past it, those closest to their deadline are dropped unlearned"
        ),
    )
    max_resolutions_per_batch: int = Field(
        default=5000,
        ge=2,
        description="negatives resolved per partition and batch; the minimum "
        "of 2 gives each of the two tasks one",
    )
    max_resolutions_per_event: int = Field(
        default=4,
        ge=2,
        le=10_000,
        description="negatives resolved per event of a partition's batch, "
        "shared by the cart-add and purchase tasks and capped by "
        "CARTWHEEL_LEARNER_MAX_RESOLUTIONS_PER_BATCH, so that a jump of the "
        "watermark is learned over several batches",
    )
    conversion_learner: Literal["logistic_regression", "alma", "fm"] = Field(
        default="alma",
        description="classifier of the conversion models: logistic_regression, "
        "alma or fm",
    )
    conversion_learning_rate: float = Field(default=0.02, gt=0.0, le=1.0)
    affinity_user_buckets: int = Field(
        default=1 << 15, ge=1, le=1 << 22, description="hash buckets for user ids"
    )
    affinity_item_buckets: int = Field(
        default=1 << 15, ge=1, le=1 << 22, description="hash buckets for item ids"
    )
    affinity_factors: int = Field(default=8, ge=1, le=128)
    affinity_learning_rate: float = Field(default=0.3, gt=0.0, le=1.0)
    affinity_pair_buckets: int = Field(
        default=1 << 18,
        ge=1,
        le=1 << 24,
        description="hash buckets for user-item pairs",
    )
    affinity_chunk_events: int = Field(
        default=64,
        ge=1,
        le=100_000,
        description="events per affinity update; smaller learns repeats sooner",
    )
    affinity_negatives: int = Field(
        default=2, ge=0, le=50, description="negatives sampled per event"
    )
    metrics_window: int = Field(
        default=1000, ge=10, description="examples covered by the rolling metrics"
    )
    drift_delta: float = Field(default=0.002, gt=0.0, lt=1.0)
    drift_grace_period: int = Field(default=200, ge=1)
    request_retrain_on_drift: bool = Field(
        default=True,
        description="ask the trainer, through Redis, to retrain the ranker when "
        "drift is detected in an online model's prequential loss",
    )
    checkpoint_dir: NonBlankPath = Field(
        default=DEFAULT_CHECKPOINT_DIR, description="a folder for the checkpoints"
    )
    checkpoint_interval_seconds: float = Field(
        default=60.0,
        gt=0.0,
        description="minimum wall-clock seconds between checkpoints; one is "
        "written with the first batch after that time, none while no events "
        "arrive",
    )
    checkpoint_key: SecretStr | None = Field(
        default=None,
        description="HMAC-SHA256 key of the checkpoints; without it they carry "
        "a SHA-256 digest, which detects corruption but not tampering",
    )
    instance_name: str = Field(
        default="learner",
        pattern=r"^[A-Za-z0-9_\-]{1,64}$",
        description="1-64 letters, digits, '_' or '-'; names the checkpoint file",
    )
    # The affinity model seeds NumPy's default_rng, which rejects negative
    # seeds, and River's FM learner takes seeds below 2**32 only.
    seed: int = Field(default=0, ge=0, le=(1 << 32) - 1)

    @field_validator("checkpoint_key")
    @classmethod
    def _check_checkpoint_key(cls, value: SecretStr | None) -> SecretStr | None:
        return check_checkpoint_key(value)
