"""Prometheus metrics of the hot-path consumer and its feature updates.

Every metric lives in this module. Labels come from small fixed sets:
``event_type``, ``outcome`` (an ``EventStatus`` value, ``rejected`` or ``failed``),
``stage``, ``cause`` and ``partition`` (bounded by the partition count).
Dead letters are counted by ``services.common.deadletters`` in
``cartwheel_dead_letters_total{service,reason}``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BATCH_SIZE",
    "CONSUMER_LAG",
    "DUPLICATE_EVENTS",
    "EVENTS_PROCESSED",
    "KEY_MISMATCHES",
    "LATE_EVENTS",
    "REDIS_APPLY_SECONDS",
    "RETRIES",
    "STAGE_SECONDS",
    "TRAINING_EXAMPLES",
]

EVENTS_PROCESSED = Counter(
    "cartwheel_hotpath_events_total",
    "Messages handled by the hot path, by event type and outcome",
    ["event_type", "outcome"],
)
KEY_MISMATCHES = Counter(
    "cartwheel_hotpath_key_mismatches_total",
    "Valid events whose Kafka message key is not their user_id, so the "
    "partitioner may split a user's events and their order",
)
BATCH_SIZE = Histogram(
    "cartwheel_hotpath_batch_messages",
    "Messages per consumed batch",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
REDIS_APPLY_SECONDS = Histogram(
    "cartwheel_features_redis_apply_seconds",
    "Time to apply one batch's features in Redis (three round trips)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
DUPLICATE_EVENTS = Counter(
    "cartwheel_features_duplicate_events_total",
    "Events whose id was already applied (dedupe hits), dropped",
)
LATE_EVENTS = Counter(
    "cartwheel_features_late_events_total",
    "Events older than the user's newest event; 'stale' ones are older than "
    "the longest window and skip windowed features",
    ["kind"],
)
CONSUMER_LAG = Gauge(
    "cartwheel_hotpath_consumer_lag_messages",
    "Messages between the committed position and the high watermark of the "
    "last fetch, refreshed on every poll; no series until both are known",
    ["partition"],
)
RETRIES = Counter(
    "cartwheel_hotpath_batch_retries_total",
    "Batch attempts that failed and were retried, by cause",
    ["cause"],
)
STAGE_SECONDS = Histogram(
    "cartwheel_hotpath_stage_seconds",
    "Time one stage took for one batch",
    ["stage"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
TRAINING_EXAMPLES = Counter(
    "cartwheel_hotpath_training_examples_total",
    "Point-in-time training examples published",
)

# Every known label value starts at 0, so dashboards and alert rules see the
# series before the first late event or retry happens.
for _kind in ("late", "stale"):
    LATE_EVENTS.labels(_kind)
for _cause in ("redis", "stage", "kafka", "os"):
    RETRIES.labels(_cause)
