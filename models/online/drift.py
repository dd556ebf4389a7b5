"""Drift detection on the prequential loss of an online model.

ADWIN keeps an adaptive window of recent losses and signals when the mean of
its older part differs from the mean of its newer part by more than its
confidence bound, i.e. when the model has started to fit the stream worse (or
better) than before.
"""

from __future__ import annotations

from river import drift

__all__ = ["DriftMonitor"]


class DriftMonitor:
    """Watches a stream of per-example losses for a change in their mean.

    Args:
        delta: ADWIN's confidence; smaller values signal fewer, surer drifts.
        grace_period: losses to observe before the first signal is possible.

    Attributes:
        n_drifts: drifts signalled since the monitor was created.
    """

    def __init__(self, delta: float = 0.002, grace_period: int = 200) -> None:
        self._detector = drift.ADWIN(delta=delta, grace_period=grace_period)  # type: ignore[no-untyped-call]
        self.n_drifts = 0

    def update(self, loss: float) -> bool:
        """Add one loss; return True when it completes a detected drift."""
        self._detector.update(loss)  # type: ignore[no-untyped-call]
        if self._detector.drift_detected:
            self.n_drifts += 1
            return True
        return False
