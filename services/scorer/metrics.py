"""Prometheus metrics of the scoring stage.

Labels come from small fixed sets: ``surface`` (four values), ``source`` (the
candidate sources) and ``model_version`` (one per promoted model).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BATCH_SECONDS",
    "CANDIDATES_PER_EVENT",
    "MODEL_IN_USE",
    "SLATES",
    "SLATE_ITEMS",
    "SLATE_LATENCY",
]

SLATE_LATENCY = Histogram(
    "cartwheel_scorer_slate_latency_seconds",
    "Time from reading the triggering event to handing its slate to the producer.",
    ["surface"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
SLATES = Counter(
    "cartwheel_scorer_slates_total",
    "Slates published, by surface and the model version that ranked them.",
    ["surface", "model_version"],
)
SLATE_ITEMS = Histogram(
    "cartwheel_scorer_slate_items",
    "Entries per published slate.",
    ["surface"],
    buckets=(0, 1, 2, 5, 10, 20, 50, 100, 200),
)
CANDIDATES_PER_EVENT = Histogram(
    "cartwheel_scorer_candidates",
    "Candidates scored per triggering event.",
    buckets=(0, 5, 10, 20, 50, 100, 200, 500),
)
BATCH_SECONDS = Histogram(
    "cartwheel_scorer_batch_seconds",
    "Time the scoring stage spends on one batch, publishing included.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
MODEL_IN_USE = Gauge(
    "cartwheel_scorer_model_in_use",
    "1 for the model version that ranked the latest batch, 0 for earlier ones.",
    ["model_version"],
)
