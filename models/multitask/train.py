"""Mini-batch training of a ranker on a TrainingSet.

Shape letters (B, S, F, T) are defined in ``models.multitask.features``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from models.multitask.dataset import TrainingSet
from models.multitask.features import TASKS, FeatureSpec
from models.multitask.losses import binary_cross_entropy_from_log_probs
from models.multitask.model import ModelConfig, RankerModule, build_model

__all__ = [
    "TrainConfig",
    "TrainProgress",
    "TrainReport",
    "fit_feature_spec",
    "model_inputs",
    "train_model",
    "train_new_model",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser settings of one training run.

    Attributes:
        epochs: passes over the training rows.
        batch_size: rows per optimiser step.
        learning_rate: Adam step size.
        task_weights: weight of each task's loss, in TASKS order; a
            single-task model uses its own task's weight.
        seed: seeds weight initialisation and batch order.
        device: ``cpu`` or ``cuda`` (or ``cuda:N``).
        progress_every_batches: how often ``on_progress`` is called.
    """

    epochs: int = 3
    batch_size: int = 2048
    learning_rate: float = 3e-3
    task_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    seed: int = 0
    device: str = "cpu"
    progress_every_batches: int = 50

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"epochs={self.epochs} batch_size={self.batch_size}; expected >= 1"
            )
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate={self.learning_rate}; expected > 0")


@dataclass(frozen=True)
class TrainProgress:
    """Progress of a training run, passed to the progress callback."""

    epoch: int
    batch: int
    batches_per_epoch: int
    loss: float
    rows_seen: int


@dataclass(frozen=True)
class TrainReport:
    """Outcome of a training run."""

    epochs: int
    rows: int
    seconds: float
    final_loss: float

    @property
    def rows_per_second(self) -> float:
        """Training rows processed per second, all epochs together."""
        return self.epochs * self.rows / self.seconds if self.seconds > 0 else 0.0


def fit_feature_spec(
    dataset: TrainingSet, hash_buckets: dict[str, int] | None = None
) -> FeatureSpec:
    """Fit the feature spec (names and normalisation) on training rows."""
    return FeatureSpec.fit(
        dataset.user_feature_names,
        dataset.item_feature_names,
        dataset.numeric,
        dataset.numeric_names,
        hash_buckets=hash_buckets,
    )


def model_inputs(
    spec: FeatureSpec, dataset: TrainingSet, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (ids (B, S) int64, numeric (B, F) float32) tensors in spec order."""
    ids = torch.from_numpy(np.ascontiguousarray(dataset.ids)).to(device)
    numeric = spec.select(dataset.numeric, dataset.numeric_names)
    return ids, torch.from_numpy(np.ascontiguousarray(numeric)).to(device)


def train_new_model(
    spec: FeatureSpec,
    model_config: ModelConfig,
    dataset: TrainingSet,
    config: TrainConfig,
    on_progress: Callable[[TrainProgress], None] | None = None,
) -> tuple[RankerModule, TrainReport]:
    """Build a model with seeded weights and train it.

    Returns:
        The trained model, on the CPU and in eval mode, and the run's report.
    """
    torch.manual_seed(config.seed)
    model = build_model(spec, model_config)
    report = train_model(model, spec, dataset, config, on_progress)
    return model, report


def train_model(
    model: RankerModule,
    spec: FeatureSpec,
    dataset: TrainingSet,
    config: TrainConfig,
    on_progress: Callable[[TrainProgress], None] | None = None,
) -> TrainReport:
    """Train ``model`` in place on every row of ``dataset``.

    Args:
        model: the model to train; its ``tasks`` pick the label columns.
        spec: the spec the model was built with.
        dataset: training rows.
        config: optimiser settings.
        on_progress: called every ``progress_every_batches`` batches and at
            the end of each epoch; an exception it raises stops training.

    Returns:
        The report; the model ends on the CPU in eval mode.
    """
    if len(dataset) == 0:
        raise ValueError("cannot train on 0 rows; expected a non-empty training set")
    # LIMITATION(L-41): the cuda path runs the same code but is not exercised
    # by the tests, which run on CPU only.
    device = torch.device(config.device)
    model.to(device).train()
    ids, numeric = model_inputs(spec, dataset, device)
    columns = [TASKS.index(task) for task in model.tasks]
    labels = torch.from_numpy(dataset.labels[:, columns].copy()).to(device)
    weights = torch.tensor(
        [config.task_weights[column] for column in columns], device=device
    )
    optimizers = _optimizers(model, config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    rows = len(dataset)
    batches_per_epoch = (rows + config.batch_size - 1) // config.batch_size
    started = time.perf_counter()
    loss_value = float("nan")
    for epoch in range(1, config.epochs + 1):
        order = torch.randperm(rows, generator=generator).to(device)
        for batch in range(batches_per_epoch):
            index = order[batch * config.batch_size : (batch + 1) * config.batch_size]
            log_probs = model(ids[index], numeric[index])
            loss = binary_cross_entropy_from_log_probs(
                log_probs, labels[index], weights
            )
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            for optimizer in optimizers:
                optimizer.step()
            is_last = batch == batches_per_epoch - 1
            if on_progress is not None and (
                is_last or (batch + 1) % config.progress_every_batches == 0
            ):
                loss_value = float(loss.detach())
                on_progress(
                    TrainProgress(
                        epoch,
                        batch + 1,
                        batches_per_epoch,
                        loss_value,
                        (epoch - 1) * rows + min((batch + 1) * config.batch_size, rows),
                    )
                )
        loss_value = float(loss.detach())
    model.to("cpu").eval()
    return TrainReport(config.epochs, rows, time.perf_counter() - started, loss_value)


def _optimizers(
    model: RankerModule, learning_rate: float
) -> list[torch.optim.Optimizer]:
    """Return SparseAdam for the embedding tables and Adam for everything else."""
    sparse = [
        module.weight
        for module in model.modules()
        if isinstance(module, torch.nn.Embedding) and module.sparse
    ]
    sparse_ids = {id(parameter) for parameter in sparse}
    dense = [p for p in model.parameters() if id(p) not in sparse_ids]
    optimizers: list[torch.optim.Optimizer] = [
        torch.optim.Adam(dense, lr=learning_rate)
    ]
    if sparse:
        optimizers.append(torch.optim.SparseAdam(sparse, lr=learning_rate))
    return optimizers
