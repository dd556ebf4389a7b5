"""The champion/challenger gate: promote a challenger only if it is not worse."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["COMPARED_METRICS", "PromotionDecision", "decide_promotion"]

COMPARED_METRICS: tuple[str, ...] = ("auc_click", "auc_cart_add", "auc_purchase", "mrr")


@dataclass(frozen=True)
class PromotionDecision:
    """Whether the challenger replaces the champion, and why."""

    is_promoted: bool
    reasons: tuple[str, ...]

    def describe(self) -> str:
        """Return the reasons as one line for logs."""
        return "; ".join(self.reasons)


def decide_promotion(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    *,
    tolerance: float,
    min_click_auc: float,
) -> PromotionDecision:
    """Compare held-out metrics of the challenger and the champion.

    The challenger is promoted when its click AUC reaches ``min_click_auc``
    and no metric in COMPARED_METRICS is lower than the champion's by more
    than ``tolerance``. A metric that is NaN on either side (a task without
    both classes in the held-out slice) is not compared, and the reasons
    record that.

    Args:
        challenger: metrics of the newly trained model on the held-out slice.
        champion: metrics of the current champion on the same slice, None
            when there is no champion.
        tolerance: largest loss per metric that still counts as not worse.
        min_click_auc: floor on the challenger's click AUC.
    """
    reasons = []
    is_promoted = True
    click_auc = challenger.get("auc_click", float("nan"))
    if not click_auc >= min_click_auc:
        is_promoted = False
        reasons.append(
            f"challenger auc_click={click_auc:.4f} is below {min_click_auc:.4f}"
        )
    if champion is None:
        reasons.append("no champion to compare with")
        return PromotionDecision(is_promoted, tuple(reasons))
    for name in COMPARED_METRICS:
        new = challenger.get(name, float("nan"))
        old = champion.get(name, float("nan"))
        if math.isnan(new) or math.isnan(old):
            reasons.append(
                f"{name} not compared (challenger={new:.4f} champion={old:.4f})"
            )
        elif new < old - tolerance:
            is_promoted = False
            reasons.append(f"{name} worse: challenger={new:.4f} champion={old:.4f}")
        else:
            reasons.append(f"{name} not worse: challenger={new:.4f} champion={old:.4f}")
    return PromotionDecision(is_promoted, tuple(reasons))
