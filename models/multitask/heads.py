"""Task towers, and the ESMM chain from their logits to entire-space probabilities.

Shape letters (B, H, T) are defined in ``models.multitask.features``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

__all__ = ["Tower", "esmm_log_probs"]


class Tower(nn.Module):
    """A small MLP from a task's input to one logit.

    Args:
        input_width: H, width of the task's input.
        hidden_width: width of the hidden layer.
    """

    def __init__(self, input_width: int, hidden_width: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_width, hidden_width),
            nn.ReLU(),
            nn.Linear(hidden_width, 1),
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Map (B, H) inputs to (B,) logits."""
        logits: torch.Tensor = self.layers(inputs).squeeze(-1)
        return logits


def esmm_log_probs(logits: torch.Tensor, detach_upstream: bool = False) -> torch.Tensor:
    """Chain per-task logits into log-probabilities over the entire space.

    Column t of ``logits`` is the logit of task t given task t-1 (click, then
    cart_add given click, then purchase given cart_add), so
    log p(task t) = sum over s <= t of log sigmoid(logit s). The result contains
    p(click), p(click) * p(cart_add | click) and p(cart_add) * p(purchase |
    cart_add), which is what the labels of every row, clicked or not, describe.

    Args:
        logits: conditional logits, shape (B, T).
        detach_upstream: when True, the gradient of column t reaches logit t
            only: the factors of earlier tasks enter column t as constants.
            The values returned are the same.

    Returns:
        Log-probabilities, shape (B, T), non-increasing along T.
    """
    conditional = functional.logsigmoid(logits)
    chained = torch.cumsum(conditional, dim=-1)
    if not detach_upstream:
        return chained
    # Column t of ``upstream`` is chained column t - 1 (0 for the first task).
    upstream = functional.pad(chained[..., :-1], (1, 0)).detach()
    return upstream + conditional
