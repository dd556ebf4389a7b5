"""Offline metrics of a ranker: per-task ROC AUC and the MRR of the positive.

Shape letters (B, T) are defined in ``models.multitask.features``.
"""

from __future__ import annotations

import numpy as np
import torch

from models.multitask.dataset import TrainingSet
from models.multitask.features import TASKS, FeatureSpec
from models.multitask.model import RankerModule
from models.multitask.ranking_metrics import roc_auc
from models.multitask.train import model_inputs

__all__ = ["evaluate", "mean_reciprocal_rank", "predict_probs", "roc_auc"]


def mean_reciprocal_rank(
    groups: np.ndarray, is_positive: np.ndarray, scores: np.ndarray
) -> float:
    """Mean over events of 1 / rank of the event's item among its sampled negatives.

    A negative tied with the positive counts as half a place ahead of it.

    Args:
        groups: shape (B,), event of each row.
        is_positive: shape (B,), True for the event's own item.
        scores: shape (B,), higher ranks first.
    """
    if groups.size == 0:
        return float("nan")
    positive_score = np.full(int(groups.max()) + 1, np.nan)
    positive_score[groups[is_positive]] = scores[is_positive]
    reference = positive_score[groups]
    is_negative = ~is_positive
    ahead = np.bincount(
        groups[is_negative],
        weights=(scores[is_negative] > reference[is_negative]).astype(np.float64),
        minlength=positive_score.size,
    )
    tied = np.bincount(
        groups[is_negative],
        weights=(scores[is_negative] == reference[is_negative]).astype(np.float64),
        minlength=positive_score.size,
    )
    has_positive = ~np.isnan(positive_score)
    ranks = 1.0 + ahead[has_positive] + 0.5 * tied[has_positive]
    return float(np.mean(1.0 / ranks)) if ranks.size else float("nan")


def predict_probs(
    model: RankerModule,
    spec: FeatureSpec,
    dataset: TrainingSet,
    batch_size: int = 16384,
) -> np.ndarray:
    """Return the model's probabilities for every row, shape (B, len(model.tasks))."""
    ids, numeric = model_inputs(spec, dataset)
    outputs = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            stop = start + batch_size
            outputs.append(torch.exp(model(ids[start:stop], numeric[start:stop])))
    if not outputs:
        return np.zeros((0, len(model.tasks)), dtype=np.float32)
    return torch.cat(outputs).numpy()


def evaluate(
    model: RankerModule, spec: FeatureSpec, dataset: TrainingSet
) -> dict[str, float]:
    """Compute ``auc_<task>`` for each of the model's tasks and, with click, ``mrr``.

    The MRR ranks by p(click), the probability the scorer orders candidates
    by when no other signal is present.
    """
    probs = predict_probs(model, spec, dataset)
    metrics: dict[str, float] = {}
    for column, task in enumerate(model.tasks):
        labels = dataset.labels[:, TASKS.index(task)]
        metrics[f"auc_{task}"] = roc_auc(labels, probs[:, column])
    if TASKS[0] in model.tasks:
        click_scores = probs[:, model.tasks.index(TASKS[0])]
        metrics["mrr"] = mean_reciprocal_rank(
            dataset.groups, dataset.is_positive, click_scores
        )
    metrics["rows"] = float(len(dataset))
    return metrics
