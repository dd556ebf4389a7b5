from __future__ import annotations

import math

from models.online import (
    ConversionModel,
    DriftMonitor,
    OnlineExample,
    PrequentialEvaluator,
)


def test_score_then_learn_scores_before_learning() -> None:
    model = ConversionModel("cart_add")
    evaluator = PrequentialEvaluator(model)
    example = OnlineExample("u", "i", {"x": 1.0})
    fresh_prob = model.predict_proba(example)

    result = evaluator.score_then_learn(example, True)

    assert result.prob == fresh_prob
    assert math.isclose(result.loss, -math.log(fresh_prob))
    assert model.n_updates == 1


def test_prequential_roc_auc_reflects_separable_stream() -> None:
    model = ConversionModel("cart_add", learner="logistic_regression")
    evaluator = PrequentialEvaluator(model, window=500)

    for index in range(2000):
        label = index % 4 == 0
        evaluator.score_then_learn(OnlineExample("u", "i", {"x": 5.0 * label}), label)

    assert evaluator.roc_auc > 0.95
    assert evaluator.n_positives == 500
    assert evaluator.log_loss < 0.3


def test_drift_monitor_signals_when_loss_level_jumps() -> None:
    monitor = DriftMonitor(delta=0.002, grace_period=50)

    early = [monitor.update(0.1) for _ in range(500)]
    late = [monitor.update(2.0) for _ in range(200)]

    assert not any(early)
    assert any(late)
    assert monitor.n_drifts >= 1
