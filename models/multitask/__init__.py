"""The multi-task PyTorch ranker: features, training rows, model, training."""

from models.multitask.dataset import DatasetConfig, TrainingSet, build_training_set
from models.multitask.features import TASKS, FeatureSpec
from models.multitask.model import ModelConfig, MultiTaskRanker, SingleTaskRanker
from models.multitask.train import TrainConfig, train_new_model

__all__ = [
    "TASKS",
    "DatasetConfig",
    "FeatureSpec",
    "ModelConfig",
    "MultiTaskRanker",
    "SingleTaskRanker",
    "TrainConfig",
    "TrainingSet",
    "build_training_set",
    "train_new_model",
]
