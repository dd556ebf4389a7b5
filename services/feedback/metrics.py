"""Prometheus metrics of the feedback app.

Counters restart at zero with the process, as Prometheus expects; the ratio
gauges are recomputed from the counts in Redis, so they survive restarts.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BATCH_SECONDS",
    "MESSAGES",
    "OUTCOMES",
    "OUTCOME_RATIO",
    "REDIS_RETRIES",
]

MESSAGES = Counter(
    "cartwheel_feedback_messages_total",
    "Slates and events read by the feedback app, by outcome: slate, event, "
    "duplicate (applied before) or invalid (not a valid slate or event).",
    ["outcome"],
)

OUTCOMES = Counter(
    "cartwheel_feedback_outcomes_total",
    "Outcomes credited to slates: impression, hit, click, cart_add, purchase.",
    ["surface", "model_version", "outcome"],
)

OUTCOME_RATIO = Gauge(
    "cartwheel_feedback_outcome_ratio",
    "Outcomes per impression over the lookback span (CARTWHEEL_FEEDBACK_"
    "RATIO_LOOKBACK_SECONDS), read from the windowed counts in Redis.",
    ["surface", "model_version", "outcome"],
)

BATCH_SECONDS = Histogram(
    "cartwheel_feedback_batch_seconds",
    "Time to apply one batch of slates and events in Redis.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

REDIS_RETRIES = Counter(
    "cartwheel_feedback_redis_retries_total",
    "Redis failures of the feedback app, each followed by a retry: of a batch "
    "(its offsets wait until it is applied) or of the ratio export.",
    ["operation"],
)
