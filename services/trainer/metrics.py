"""Prometheus metrics of the trainer.

Every metric lives in this module. Labels come from small fixed sets:
``outcome`` (promoted, rejected, skipped, failed), ``task`` (click, cart_add,
purchase), ``role`` (champion, challenger) and ``metric`` (an AUC or mrr).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "EXAMPLES_CONSUMED",
    "EXAMPLES_EXPIRED",
    "EXAMPLES_INVALID",
    "HOLDOUT_METRIC",
    "LOCK_HELD",
    "REFRESHES",
    "REFRESH_SECONDS",
    "TRAINING_ROWS",
    "TRAINING_ROWS_PER_SECOND",
    "WINDOW_EXAMPLES",
]

EXAMPLES_CONSUMED = Counter(
    "cartwheel_trainer_examples_consumed_total",
    "Training examples read from Kafka and added to the window",
)
EXAMPLES_INVALID = Counter(
    "cartwheel_trainer_examples_invalid_total",
    "Messages on the training-examples topic that failed validation and were skipped",
)
EXAMPLES_EXPIRED = Counter(
    "cartwheel_trainer_examples_expired_total",
    "Training examples dropped from the window, or skipped on arrival, for being "
    "more than the window span older than the newest example",
)
WINDOW_EXAMPLES = Gauge(
    "cartwheel_trainer_window_examples",
    "Training examples held in the sliding window",
)
REFRESHES = Counter(
    "cartwheel_trainer_refreshes_total",
    "Refreshes by outcome: promoted, rejected, skipped or failed",
    ["outcome"],
)
REFRESH_SECONDS = Histogram(
    "cartwheel_trainer_refresh_seconds",
    "Duration of a refresh that trained a challenger, from window to decision",
    buckets=(1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 300, 600),
)
TRAINING_ROWS = Gauge(
    "cartwheel_trainer_training_rows",
    "Training rows (positives and sampled negatives) of the latest refresh",
)
TRAINING_ROWS_PER_SECOND = Gauge(
    "cartwheel_trainer_training_rows_per_second",
    "Training speed of the latest refresh, all epochs together",
)
HOLDOUT_METRIC = Gauge(
    "cartwheel_trainer_holdout_metric",
    "Held-out metric of the latest refresh, by role and metric name",
    ["role", "metric"],
)
LOCK_HELD = Gauge(
    "cartwheel_trainer_lock_held",
    "1 while this trainer holds the training lock, else 0",
)
