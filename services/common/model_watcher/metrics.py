"""Prometheus metrics of the model watcher and its ranker loads."""

from __future__ import annotations

from typing import Literal

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "LOAD_OUTCOMES",
    "MODEL_ANNOUNCEMENT_SKIPPED",
    "MODEL_BEHIND_ANNOUNCEMENT",
    "MODEL_BLOCKED_LOADS",
    "MODEL_LOADS",
    "MODEL_LOAD_SECONDS",
    "MODEL_WATCHER_RUNNING",
    "LoadOutcome",
]

LoadOutcome = Literal["loaded", "failed", "timed_out"]
LOAD_OUTCOMES: tuple[LoadOutcome, ...] = ("loaded", "failed", "timed_out")

MODEL_LOADS = Counter(
    "cartwheel_model_loads_total",
    "Ranker versions loaded from announcements, by outcome (loaded, failed or "
    "timed_out). A timed-out load that is used when it returns also counts as "
    "loaded",
    ["outcome"],
)
MODEL_LOAD_SECONDS = Histogram(
    "cartwheel_model_load_seconds",
    "Time to load, verify and warm up one announced ranker version",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# Labelled, so that a process without a watcher exports no sample at all.
MODEL_WATCHER_RUNNING = Gauge(
    "cartwheel_model_watcher_running",
    "1 while the model watcher follows the models topic, 0 while the API's "
    "watcher waits for the topic to exist or once a watcher stopped on an error "
    "(new versions are then not loaded until a restart)",
    ["topic"],
)
MODEL_BLOCKED_LOADS = Gauge(
    "cartwheel_model_blocked_loads",
    "Artifact reads that ran past the load timeout and still block a thread",
    ["topic"],
)
MODEL_BEHIND_ANNOUNCEMENT = Gauge(
    "cartwheel_model_behind_announcement",
    "1 while the ranker in use is not the newest announced version (none yet, "
    "or an earlier one), 0 when it is or before the first announcement",
    ["topic"],
)

MODEL_ANNOUNCEMENT_SKIPPED = Gauge(
    "cartwheel_model_announcement_skipped",
    "1 while the newest announced version failed all its load attempts and is "
    "not tried again until another announcement, 0 otherwise",
    ["topic"],
)
