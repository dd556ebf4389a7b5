"""Settings of the evaluator, read from ``CARTWHEEL_EVALUATION_*`` variables."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.events import WireTime
from services.common.settings import (
    ConsumerGroupId,
    KafkaSettings,
    LogLevel,
    NonBlankPath,
    PlainIntegers,
    TopicSettings,
)

__all__ = ["MAX_CUTOFF", "BaselineSettings", "EvaluationSettings"]

MAX_CUTOFF = 200
"""The maximum list length K that the evaluation scores."""

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class BaselineSettings(PlainIntegers, BaseSettings):
    """Parameters of the baselines that the evaluator computes on the same replay."""

    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_EVALUATION_BASELINE_", frozen=True, allow_inf_nan=False
    )

    trending_half_life_seconds: float = Field(
        default=3600.0, gt=0.0, description="a positive number of seconds"
    )
    covisitation_window: int = Field(
        default=5,
        ge=1,
        le=100,
        description="how many earlier items of a session pair with a new item",
    )
    covisitation_context_items: int = Field(
        default=3,
        ge=1,
        le=20,
        description="how many recent session items seed a recommendation",
    )
    knn_sample_size: int = Field(
        default=200,
        ge=1,
        le=10_000,
        description="most recent sessions kept per item as neighbour candidates",
    )
    knn_neighbors: int = Field(
        default=50, ge=1, le=1000, description="neighbour sessions that vote"
    )
    knn_session_items: int = Field(
        default=20,
        ge=1,
        le=200,
        description="most recent items of a session that count",
    )
    knn_position_decay: float = Field(
        default=2.0,
        gt=0.0,
        description="items of the current session, e-folding length in positions",
    )
    knn_recency_decay_seconds: float = Field(
        default=3600.0 * 24,
        gt=0.0,
        description="age of a neighbour session, e-folding time in seconds",
    )
    knn_neighbor_position_decay: float = Field(
        default=3.0,
        gt=0.0,
        description="distance from the shared item, e-folding length in positions",
    )


class EvaluationSettings(PlainIntegers, BaseSettings):
    """Sources, scoring options and report location of the evaluator."""

    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_EVALUATION_", frozen=True, allow_inf_nan=False
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    baselines: BaselineSettings = Field(default_factory=BaselineSettings)
    group_id: ConsumerGroupId = Field(
        default="cartwheel-evaluation",
        min_length=1,
        max_length=128,
        description="consumer group id of the evaluator, 1-128 characters",
    )
    read_timeout_seconds: float = Field(
        default=300.0,
        gt=0.0,
        allow_inf_nan=False,
        description="seconds allowed to read every topic up to its high watermark",
    )
    cutoffs: tuple[int, ...] = Field(
        default=(5, 10, 20),
        description=f"list lengths K, ascending, each 1-{MAX_CUTOFF}",
    )
    # Read as event times are, so that a time an event may carry is a valid
    # start, and a time that events reject is rejected here too.
    score_from: WireTime | None = Field(
        default=None,
        description="RFC 3339 time with offset, as in events; earlier events "
        "train the baselines but are not scored",
    )
    session_gap_seconds: float = Field(
        default=1800.0,
        gt=0.0,
        description="inactivity that ends a session of events without session_id",
    )
    exclude_trigger_item: bool = Field(
        default=True,
        description="drop the triggering item from baseline lists, as slates do",
    )
    timeline_buckets: int = Field(
        default=40, ge=1, le=1000, description="points of the metric-over-time plot"
    )
    report_dir: NonBlankPath = Field(
        default=Path("reports/evaluation"), description="a folder for the report"
    )
    log_level: LogLevel = "INFO"

    @field_validator("score_from", mode="before")
    @classmethod
    def _reject_numeric_score_from(cls, value: object) -> object:
        # pydantic reads a bare number as Unix seconds, so "20191001" would
        # mean 1970-08-22 and every event would be scored without a word.
        text = str(value).strip() if isinstance(value, str | int | float) else ""
        if text and _NUMBER.fullmatch(text):
            raise ValueError("a bare number would be read as Unix seconds, not a date")
        return value

    @field_validator("cutoffs", mode="before")
    @classmethod
    def _reject_fractional_cutoffs(cls, value: object) -> object:
        # pydantic would otherwise accept 10.0 or true as a list length silently.
        if isinstance(value, list | tuple):
            for item in value:
                if isinstance(item, bool) or not isinstance(item, int):
                    raise ValueError(f"expected whole list lengths, got {item!r}")
        return value

    @field_validator("cutoffs")
    @classmethod
    def _check_cutoffs(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or list(value) != sorted(set(value)):
            raise ValueError("expected distinct list lengths in ascending order")
        if value[0] < 1 or value[-1] > MAX_CUTOFF:
            raise ValueError(f"expected list lengths from 1 to {MAX_CUTOFF}")
        return value
