"""Mini-batch training of a ranker on a TrainingSet.

Shape letters (B, S, F, T) are defined in ``models.multitask.features``.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from models.multitask.dataset import TrainingSet
from models.multitask.features import TASKS, FeatureSpec
from models.multitask.losses import binary_cross_entropy_from_log_probs
from models.multitask.model import ModelConfig, RankerModule, build_model
from models.multitask.ranking_metrics import roc_auc
from schemas.events import EventType

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
        epochs: passes over the training rows; with a validation slice, the
            most passes.
        batch_size: rows per optimiser step.
        learning_rate: Adam step size.
        task_weights: weight of each task's loss, in TASKS order; a
            single-task model uses its own task's weight.
        seed: seeds weight initialisation and batch order.
        device: ``cpu`` or ``cuda`` (or ``cuda:N``).
        progress_every_batches: how often ``on_progress`` is called.
        validation_fraction: share of the newest training events held back to
            pick the number of epochs; 0 trains ``epochs`` passes on every row.
            After each pass the model scores the held-back rows, and its
            validation score is the mean over its tasks of their ROC AUC (a
            task without both classes there is left out). Training stops once
            ``patience`` passes in a row did not raise the best score, and the
            weights of the best pass are kept. Every model, multi-task or
            single-task, is selected the same way.
        patience: passes without a better validation score before stopping.
        selection_task: when the model predicts this task, its validation
            AUC alone is the score; a model without it uses the mean over its
            tasks. The multi-task model is then stopped where the task that
            orders the slate peaks, and its rare tasks are kept from
            overfitting by ``ModelConfig.input_dropout`` instead.
        refit: with a validation slice, train a fresh model with the same seed
            on every row (the validation slice included) for the number of
            passes that was picked, so the newest events are not lost to
            the selection.
    """

    epochs: int = 3
    batch_size: int = 2048
    learning_rate: float = 3e-3
    task_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    seed: int = 0
    device: str = "cpu"
    progress_every_batches: int = 50
    validation_fraction: float = 0.0
    patience: int = 2
    refit: bool = True
    selection_task: EventType | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"epochs={self.epochs} batch_size={self.batch_size}; expected >= 1"
            )
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate={self.learning_rate}; expected > 0")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                f"validation_fraction={self.validation_fraction}; expected >= 0 and < 1"
            )
        if self.patience < 1:
            raise ValueError(f"patience={self.patience}; expected >= 1")


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
    """Outcome of a training run.

    Attributes:
        epochs: passes run.
        rows: rows trained on (without the validation slice).
        seconds: wall time of the passes and validation scoring.
        final_loss: loss of the last batch.
        best_epoch: the pass whose weights were kept (the last one without
            a validation slice).
        validation_score: the kept pass's validation score; NaN without one.
    """

    epochs: int
    rows: int
    seconds: float
    final_loss: float
    best_epoch: int = 0
    validation_score: float = float("nan")

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
    on_batch: Callable[[], None] | None = None,
) -> tuple[RankerModule, TrainReport]:
    """Build a model with seeded weights and train it.

    With a validation slice and ``config.refit``, the first run picks the
    number of passes and a second run from the same seed trains on every row.
    ``on_progress`` and ``on_batch`` are passed on to :func:`train_model`.

    Returns:
        The trained model, on the CPU and in eval mode, and the run's report.
    """
    torch.manual_seed(config.seed)
    model = build_model(spec, model_config)
    report = train_model(model, spec, dataset, config, on_progress, on_batch)
    if config.validation_fraction == 0 or not config.refit or report.best_epoch < 1:
        return model, report
    torch.manual_seed(config.seed)
    model = build_model(spec, model_config)
    final = train_model(
        model,
        spec,
        dataset,
        replace(config, epochs=report.best_epoch, validation_fraction=0.0),
        on_progress,
        on_batch,
    )
    return model, replace(
        final,
        seconds=report.seconds + final.seconds,
        validation_score=report.validation_score,
    )


def train_model(
    model: RankerModule,
    spec: FeatureSpec,
    dataset: TrainingSet,
    config: TrainConfig,
    on_progress: Callable[[TrainProgress], None] | None = None,
    on_batch: Callable[[], None] | None = None,
) -> TrainReport:
    """Train ``model`` in place on the rows of ``dataset``.

    Args:
        model: the model to train; its ``tasks`` pick the label columns.
        spec: the spec the model was built with.
        dataset: training rows; with ``config.validation_fraction`` above 0,
            its newest events are held back to pick the epoch.
        config: optimiser and stopping settings.
        on_progress: called every ``progress_every_batches`` batches and at
            the end of each epoch; an exception it raises stops training.
        on_batch: called after every optimiser step; an exception it raises
            stops training. It lets a caller stop within one batch, where
            progress reports may be many seconds apart.

    Returns:
        The report; the model ends on the CPU in eval mode.
    """
    if len(dataset) == 0:
        raise ValueError("cannot train on 0 rows; expected a non-empty training set")
    validation: TrainingSet | None = None
    if config.validation_fraction > 0:
        dataset, validation = dataset.split_by_time(config.validation_fraction)
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
    selected = columns
    if config.selection_task in model.tasks:
        selected = [TASKS.index(config.selection_task)]
    stopper = (
        _EarlyStopping(model, spec, validation, selected, config.patience, device)
        if validation is not None
        else None
    )
    epoch = 0
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
            if on_batch is not None:
                on_batch()
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
        if stopper is not None and stopper.should_stop(epoch):
            break
    best_epoch, score = epoch, float("nan")
    if stopper is not None:
        best_epoch, score = stopper.restore_best() or (best_epoch, score)
    model.to("cpu").eval()
    return TrainReport(
        epoch, rows, time.perf_counter() - started, loss_value, best_epoch, score
    )


class _EarlyStopping:
    """Scores the model on validation rows after each epoch and keeps the best.

    ``columns`` are the TASKS columns whose AUC makes the score.
    """

    def __init__(
        self,
        model: RankerModule,
        spec: FeatureSpec,
        validation: TrainingSet,
        columns: list[int],
        patience: int,
        device: torch.device,
    ) -> None:
        self._model = model
        self._ids, self._numeric = model_inputs(spec, validation, device)
        self._labels = validation.labels[:, columns]
        self._outputs = [model.tasks.index(TASKS[column]) for column in columns]
        self._patience = patience
        self._best_score = -math.inf
        self._best_epoch = 0
        self._best_state: dict[str, torch.Tensor] | None = None
        self._stale = 0
        self._usable = any(
            0 < self._labels[:, index].sum() < len(self._labels)
            for index in range(len(columns))
        )
        if not self._usable:
            logger.warning(
                "early stopping off: no task has both classes in the %s "
                "validation rows",
                len(self._labels),
            )

    def score(self) -> float:
        """Mean over tasks with both classes of the validation ROC AUC."""
        self._model.eval()
        with torch.inference_mode():
            # AUC depends on the order only, so log-probabilities will do.
            log_probs = self._model(self._ids, self._numeric).cpu().numpy()
        self._model.train()
        aucs = [
            roc_auc(self._labels[:, index], log_probs[:, output])
            for index, output in enumerate(self._outputs)
        ]
        usable = [auc for auc in aucs if not math.isnan(auc)]
        return float(np.mean(usable)) if usable else float("nan")

    def should_stop(self, epoch: int) -> bool:
        """Record the epoch's score; True once ``patience`` epochs did not improve."""
        if not self._usable:
            return False
        score = self.score()
        if score > self._best_score:
            self._best_score = score
            self._best_epoch = epoch
            self._best_state = copy.deepcopy(self._model.state_dict())
            self._stale = 0
            return False
        self._stale += 1
        return self._stale >= self._patience

    def restore_best(self) -> tuple[int, float] | None:
        """Load the best epoch's weights; return (best epoch, its score).

        Returns:
            None when no epoch was scored; the weights are then left as they are.
        """
        if self._best_state is None:
            return None
        self._model.load_state_dict(self._best_state)
        return self._best_epoch, self._best_score


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
