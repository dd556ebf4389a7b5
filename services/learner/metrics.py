"""Prometheus metrics of the online-learning stage.

All metrics live in the default registry, so one process exposes them once
however many stages it creates. ``model`` is one of ``cart_add``,
``purchase`` and ``affinity``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BATCH_SECONDS",
    "CHECKPOINTS",
    "DRIFTS",
    "DUPLICATES",
    "EXAMPLES",
    "PENDING",
    "PENDING_DROPPED",
    "PENDING_EVICTED",
    "RETRAIN_REQUESTS",
    "ROLLING_LOG_LOSS",
    "ROLLING_ROC_AUC",
    "UNDECODABLE",
    "WATERMARK",
]

EXAMPLES = Counter(
    "cartwheel_learner_examples_total",
    "Examples learned, by model and label (1 positive, 0 negative)",
    ["model", "label"],
)
DUPLICATES = Counter(
    "cartwheel_learner_duplicate_events_total",
    "Events skipped because their event_id was already applied (replays)",
)
PENDING_DROPPED = Counter(
    "cartwheel_learner_pending_dropped_total",
    "Trigger events not recorded because their pair had too many pending examples",
)
PENDING_EVICTED = Counter(
    "cartwheel_learner_pending_evicted_total",
    "Pending examples dropped unlearned because their task had more than "
    "CARTWHEEL_LEARNER_MAX_PENDING_PER_TASK in one partition",
)
UNDECODABLE = Counter(
    "cartwheel_learner_undecodable_examples_total",
    "Resolved examples not learned because they were stored under another "
    "feature layout (pending across a change of the feature names)",
)
ROLLING_ROC_AUC = Gauge(
    "cartwheel_learner_rolling_roc_auc",
    "Prequential ROC AUC over the latest examples, by model",
    ["model"],
)
ROLLING_LOG_LOSS = Gauge(
    "cartwheel_learner_rolling_log_loss",
    "Prequential mean log loss over the latest examples, by model",
    ["model"],
)
DRIFTS = Counter(
    "cartwheel_learner_drifts_total",
    "Drifts that ADWIN detected on the prequential loss, by model",
    ["model"],
)
RETRAIN_REQUESTS = Counter(
    "cartwheel_learner_retrain_requests_total",
    "Early retraining requests written for the trainer",
)
PENDING = Gauge(
    "cartwheel_learner_pending_examples",
    "Examples waiting for their label in this instance's partitions, by model",
    ["model"],
)
WATERMARK = Gauge(
    "cartwheel_learner_watermark_seconds",
    "Highest event time seen, Unix seconds, over this instance's partitions",
)
BATCH_SECONDS = Histogram(
    "cartwheel_learner_batch_seconds",
    "Wall-clock time the stage spent on one batch",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
CHECKPOINTS = Counter(
    "cartwheel_learner_checkpoints_total",
    "Checkpoints by outcome: written, restored, rejected or failed",
    ["outcome"],
)
