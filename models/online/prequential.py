"""Prequential (test-then-train) evaluation of an online model.

Every example is scored by the model before the model learns from it, so the
score is an honest out-of-sample prediction. Rolling ROC AUC and log loss over
the latest ``window`` examples describe how well the model fits the stream
now. The per-example log loss also feeds the drift monitor.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from river import metrics

from models.online.base import OnlineExample, OnlineModel
from models.online.drift import DriftMonitor

__all__ = ["PrequentialEvaluator", "PrequentialResult"]

# Clip probabilities before the log so a confident wrong prediction costs at most
# about 34.5 nats instead of infinity.
_EPSILON = 1e-15


@dataclass(frozen=True)
class PrequentialResult:
    """The outcome of one test-then-train step.

    Attributes:
        prob: the model's probability before it learned the example.
        loss: the log loss of that probability against the label.
        is_drift: whether this loss completed a detected drift.
    """

    prob: float
    loss: float
    is_drift: bool


class PrequentialEvaluator:
    """Scores, then teaches, one model, keeping rolling metrics and a drift monitor.

    Args:
        model: the model to evaluate and update.
        window: number of latest examples the rolling metrics cover.
        drift_monitor: detector fed with each example's log loss.
    """

    def __init__(
        self,
        model: OnlineModel,
        window: int = 1000,
        drift_monitor: DriftMonitor | None = None,
    ) -> None:
        self.model = model
        self.drift_monitor = drift_monitor or DriftMonitor()
        self._roc_auc = metrics.RollingROCAUC(window_size=window)  # type: ignore[no-untyped-call]
        # The losses are computed here anyway, so a plain window of them is a
        # third of the cost of River's rolling LogLoss on the per-event path.
        self._losses: deque[float] = deque(maxlen=window)
        self.n_examples = 0
        self.n_positives = 0

    def score_then_learn(
        self, example: OnlineExample, label: bool
    ) -> PrequentialResult:
        """Score the example, record the metrics, then learn it."""
        result = self._score(self.model.predict_proba(example), label)
        self.model.learn_one(example, label)
        return result

    def score_then_learn_many(
        self, examples: Sequence[OnlineExample], labels: Sequence[bool]
    ) -> list[PrequentialResult]:
        """Score every example with the model as it is, then learn them all.

        Each example is still scored before it is learned, but none of them
        benefits from the others, as in :meth:`OnlineModel.learn_many`.
        """
        probs = self.model.predict_proba_many(examples)
        results = [
            self._score(prob, label) for prob, label in zip(probs, labels, strict=True)
        ]
        self.model.learn_many(examples, labels)
        return results

    def _score(self, prob: float, label: bool) -> PrequentialResult:
        clipped = min(max(prob, _EPSILON), 1.0 - _EPSILON)
        loss = -math.log(clipped if label else 1.0 - clipped)
        self._roc_auc.update(bool(label), prob)  # type: ignore[no-untyped-call]
        self._losses.append(loss)
        self.n_examples += 1
        self.n_positives += int(bool(label))
        is_drift = self.drift_monitor.update(loss)
        return PrequentialResult(prob=prob, loss=loss, is_drift=is_drift)

    @property
    def roc_auc(self) -> float:
        """Rolling ROC AUC; 0.5 until both classes have been seen."""
        return float(self._roc_auc.get())  # type: ignore[no-untyped-call]

    @property
    def log_loss(self) -> float:
        """Rolling mean log loss; 0.0 before the first example."""
        return math.fsum(self._losses) / len(self._losses) if self._losses else 0.0
