from __future__ import annotations

from services.trainer.promotion import decide_promotion

CHAMPION = {"auc_click": 0.70, "auc_cart_add": 0.80, "auc_purchase": 0.75, "mrr": 0.6}


def test_promotion_accepts_challenger_that_is_not_worse() -> None:
    challenger = {**CHAMPION, "auc_click": 0.71}

    decision = decide_promotion(challenger, CHAMPION, tolerance=0.0, min_click_auc=0.5)

    assert decision.is_promoted
    assert "auc_click not worse" in decision.describe()


def test_promotion_rejects_challenger_worse_on_one_task() -> None:
    challenger = {**CHAMPION, "auc_purchase": 0.70}

    decision = decide_promotion(challenger, CHAMPION, tolerance=0.01, min_click_auc=0.5)

    assert not decision.is_promoted
    assert "auc_purchase worse: challenger=0.7000 champion=0.7500" in decision.reasons


def test_promotion_allows_loss_within_tolerance() -> None:
    challenger = {**CHAMPION, "mrr": 0.595}

    decision = decide_promotion(challenger, CHAMPION, tolerance=0.01, min_click_auc=0.5)

    assert decision.is_promoted


def test_promotion_skips_metric_that_is_nan() -> None:
    challenger = {**CHAMPION, "auc_purchase": float("nan")}

    decision = decide_promotion(challenger, CHAMPION, tolerance=0.0, min_click_auc=0.5)

    assert decision.is_promoted
    assert any(
        reason.startswith("auc_purchase not compared") for reason in decision.reasons
    )


def test_promotion_without_champion_needs_min_click_auc() -> None:
    weak = {**CHAMPION, "auc_click": 0.52}

    decision = decide_promotion(weak, None, tolerance=0.0, min_click_auc=0.55)

    assert not decision.is_promoted
    assert "challenger auc_click=0.5200 is below 0.5500" in decision.reasons
    assert "no champion to compare with" in decision.reasons
