"""The trainer: periodic ranker refreshes behind a champion/challenger gate."""

from services.trainer.settings import TrainerSettings
from services.trainer.trainer import RefreshResult, Trainer

__all__ = ["RefreshResult", "Trainer", "TrainerSettings"]
