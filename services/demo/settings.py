"""Settings of ``cartwheel demo``, read from ``CARTWHEEL_DEMO_*``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.settings import NonBlankPath, PlainIntegers

__all__ = ["DemoSettings"]


class DemoSettings(PlainIntegers, BaseSettings):
    """Where the demo keeps its servers' state and how it splits the replay."""

    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_DEMO_", frozen=True, allow_inf_nan=False
    )

    state_dir: NonBlankPath = Field(
        default=Path(".cartwheel/demo"),
        description="a folder for the demo's pid files, logs, checkpoints and "
        "models; each run deletes its learner, models, feedback and logs "
        "sub-folders, so a folder that has one of them but no earlier run is "
        "rejected",
    )
    report_dir: NonBlankPath = Field(
        default=Path("reports/demo"), description="a folder for the evaluation report"
    )
    warmup_fraction: float = Field(
        default=0.3,
        gt=0.0,
        lt=1.0,
        description="share of the events replayed before the first model is trained",
    )
    catch_up_timeout_seconds: float = Field(
        default=900.0,
        gt=0.0,
        description="seconds the services may take to process a replayed slice",
    )
    training_timeout_seconds: float = Field(
        default=600.0,
        gt=0.0,
        description="seconds the trainer may take to train and announce a model",
    )
