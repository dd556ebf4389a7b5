"""Losses of the ranker, computed from log-probabilities for numerical stability.

Shape letters (B, T) are defined in ``models.multitask.features``.
"""

from __future__ import annotations

import torch

__all__ = ["binary_cross_entropy_from_log_probs"]

# Keeps log(1 - p) finite when p rounds to 1.
_MAX_LOG_PROB = -1e-7


def binary_cross_entropy_from_log_probs(
    log_probs: torch.Tensor,
    labels: torch.Tensor,
    task_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean binary cross-entropy of probabilities given as logarithms.

    ESMM products of probabilities are computed in log space, so the loss takes
    log p directly and uses log(1 - p) = log(-expm1(log p)) instead of
    subtracting rounded probabilities.

    Args:
        log_probs: shape (B, T), each entry <= 0.
        labels: shape (B, T), 0 or 1.
        task_weights: shape (T,), weight of each task's mean loss; 1 when None.

    Returns:
        A scalar: the weighted sum over tasks of the mean loss over rows.
    """
    log_probs = log_probs.clamp(max=_MAX_LOG_PROB)
    log_complement = torch.log(-torch.expm1(log_probs))
    per_entry = -(labels * log_probs + (1.0 - labels) * log_complement)
    per_task = per_entry.mean(dim=0)
    if task_weights is not None:
        per_task = per_task * task_weights
    return per_task.sum()
