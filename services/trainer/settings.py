"""Settings of the trainer, read from ``CARTWHEEL_TRAINER_*`` variables.

The shared blocks are read from ``CARTWHEEL_KAFKA_*``, ``CARTWHEEL_REDIS_*``
and ``CARTWHEEL_TOPIC_*``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.settings import (
    KafkaSettings,
    LogLevel,
    MetricsHost,
    NonBlankPath,
    PlainIntegers,
    RedisSettings,
    TopicSettings,
)

if TYPE_CHECKING:
    # The configs' modules load PyTorch, which the settings need only when a
    # CUDA device is asked for or a config is built.
    from models.multitask.dataset import DatasetConfig
    from models.multitask.model import ModelConfig
    from models.multitask.train import TrainConfig

__all__ = ["MAX_TORCH_THREADS", "TrainerSettings"]

# The bound of the trainer's PyTorch threads and of `trainer compare --threads`.
# It rejects typos such as 1000, which would start that many threads.
MAX_TORCH_THREADS = 256

# The window's bound, ten years as for the other spans of seconds. A longer
# span is most likely a typo.
_TEN_YEARS_SECONDS = 10 * 365 * 86_400


class TrainerSettings(PlainIntegers, BaseSettings):
    """When and on what the trainer refreshes the ranker, and how it promotes."""

    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_TRAINER_", frozen=True, allow_inf_nan=False
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)

    model_name: str = Field(
        default="ranker",
        pattern=r"^[a-z][a-z0-9_]{0,39}$",
        description="name of the model: the artifact prefix and the models key",
    )
    registry_dir: NonBlankPath = Field(
        default=Path("var/registry"), description="a folder for the model artifacts"
    )
    refresh_interval_seconds: float = Field(
        default=3600.0, gt=0, description="wall-clock seconds between refreshes"
    )
    retrain_poll_seconds: float = Field(
        default=10.0, gt=0, description="how often a pending retrain request is checked"
    )
    window_seconds: float = Field(
        default=7 * 86400.0,
        gt=0,
        le=_TEN_YEARS_SECONDS,
        description="event-time span of the sliding window of training examples, "
        "at most ten years",
    )
    max_window_examples: int = Field(
        default=1_000_000,
        ge=100,
        description="training examples kept in memory; the oldest go first",
    )
    min_examples: int = Field(
        default=1000, ge=10, description="examples needed before a refresh trains"
    )
    holdout_fraction: float = Field(
        default=0.1,
        gt=0,
        lt=1,
        description="share of the newest events held out for champion/challenger",
    )
    promotion_tolerance: float = Field(
        default=0.005,
        ge=0,
        le=0.5,
        description="AUC or MRR a challenger may lose per metric and still be "
        "promoted, which absorbs evaluation noise",
    )
    kept_versions: int = Field(
        default=10,
        ge=2,
        le=10_000,
        description="newest promoted versions kept in the registry after a "
        "promotion; older ones are deleted, the champion never",
    )
    min_click_auc: float = Field(
        default=0.55,
        ge=0,
        le=1,
        description="click AUC below which no challenger is promoted, even "
        "without a champion",
    )

    negatives_per_positive: int = Field(default=4, ge=0, le=100)
    label_horizon_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="event-time seconds after an event in which a cart add or "
        "purchase of the same item labels it",
    )
    embedding_dim: int = Field(default=16, ge=1, le=256)
    expert_count: int = Field(default=4, ge=1, le=64)
    expert_width: int = Field(default=64, ge=1, le=4096)
    tower_width: int = Field(default=32, ge=1, le=4096)
    epochs: int = Field(default=2, ge=1, le=100)
    batch_size: int = Field(default=2048, ge=1, le=1 << 20)
    learning_rate: float = Field(default=0.003, gt=0, le=1)
    # torch.manual_seed takes seeds below 2**64.
    seed: int = Field(default=0, ge=0, le=(1 << 64) - 1)
    device: str = Field(
        default="cpu",
        pattern=r"^(cpu|cuda(:\d+)?)$",
        description="cpu, cuda or cuda:N; cuda needs a CUDA build of PyTorch and a GPU",
    )
    torch_threads: int = Field(
        default=2,
        ge=1,
        le=MAX_TORCH_THREADS,
        description="CPU threads of PyTorch (torch.set_num_threads)",
    )

    # The holder renews the lock every third of its TTL, so the TTL need only
    # outlast a few failed renewals, not a training run. What a longer one
    # changes is how long a crashed trainer keeps the others from training.
    lock_ttl_seconds: float = Field(
        default=60.0,
        ge=1,
        le=86_400,
        description="lifetime of the training lock in seconds, renewed every "
        "third of it; at most a day, which is how long a crashed trainer "
        "may keep the others from training",
    )
    poll_timeout_seconds: float = Field(
        default=1.0, gt=0, le=60, description="maximum wait of one Kafka poll"
    )
    metrics_host: MetricsHost = "127.0.0.1"
    metrics_port: int = Field(
        default=9106, ge=0, le=65535, description="port of /metrics; 0 turns it off"
    )
    log_level: LogLevel = "INFO"

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not value.startswith("cuda"):
            return value
        import torch

        if torch.version.cuda is None:
            raise ValueError(
                f"this PyTorch build (torch {torch.__version__}) has no CUDA support"
            )
        if not torch.cuda.is_available():
            raise ValueError("PyTorch sees no CUDA device on this machine")
        index = int(value.partition(":")[2] or 0)
        count = torch.cuda.device_count()
        if index >= count:
            raise ValueError(
                f"CUDA device {index} does not exist; PyTorch sees {count} "
                "on this machine"
            )
        return value

    def dataset_config(self) -> DatasetConfig:
        """Return the labelling and negative-sampling settings."""
        from models.multitask.dataset import DatasetConfig

        return DatasetConfig(
            negatives_per_positive=self.negatives_per_positive,
            label_horizon_seconds=self.label_horizon_seconds,
            seed=self.seed,
        )

    def network_config(self) -> ModelConfig:
        """Return the network sizes of the multi-task model."""
        from models.multitask.model import ModelConfig

        return ModelConfig(
            embedding_dim=self.embedding_dim,
            expert_count=self.expert_count,
            expert_width=self.expert_width,
            tower_width=self.tower_width,
        )

    def train_config(self) -> TrainConfig:
        """Return the optimiser settings."""
        from models.multitask.train import TrainConfig

        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            seed=self.seed,
            device=self.device,
        )
