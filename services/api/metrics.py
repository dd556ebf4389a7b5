"""Prometheus metrics of the HTTP API.

``route`` is the route template (e.g. ``/v1/users/{user_id}/slates/{surface}``),
never the concrete path, so its label set stays small.
"""

from __future__ import annotations

import math

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "CHECKPOINT_AGE",
    "CHECKPOINT_LOADS",
    "EVENTS_INGESTED",
    "INVALID_SLATES",
    "INVALID_STOCKS",
    "REQUEST_SECONDS",
    "SESSION_EVENTS",
    "SESSION_FOLLOWER_RUNNING",
    "SESSION_INDEX_SESSIONS",
    "SLATE_READS",
]

REQUEST_SECONDS = Histogram(
    "cartwheel_api_request_seconds",
    "Time to answer one HTTP request, by route, method and status code.",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
EVENTS_INGESTED = Counter(
    "cartwheel_api_events_total",
    "Events posted over HTTP, by outcome (accepted, rejected, failed).",
    ["outcome"],
)
SLATE_READS = Counter(
    "cartwheel_api_slate_reads_total",
    "Slate reads by surface and where the slate came from (stored, computed, none).",
    ["surface", "origin"],
)
INVALID_SLATES = Counter(
    "cartwheel_api_invalid_slates_total",
    "Stored slates that were not valid slates and counted as none, by surface.",
    ["surface"],
)
INVALID_STOCKS = Counter(
    "cartwheel_api_invalid_stocks_total",
    "Catalog stocks that were not finite numbers and counted as unknown while "
    "items out of stock were left out of stored slates, by surface.",
    ["surface"],
)
SESSION_INDEX_SESSIONS = Gauge(
    "cartwheel_api_session_index_sessions",
    "Sessions held by the API's session-kNN index.",
)
SESSION_EVENTS = Counter(
    "cartwheel_api_session_events_total",
    "Messages of the events topic read into the session-kNN index, by outcome "
    "(indexed, skipped for not being a valid event).",
    ["outcome"],
)
SESSION_FOLLOWER_RUNNING = Gauge(
    "cartwheel_api_session_follower_running",
    "1 while the API follows the events topic into its session-kNN index, 0 "
    "while it waits for the topic to exist or once the follower stopped; absent "
    "when the index is off.",
    ["topic"],
)
CHECKPOINT_AGE = Gauge(
    "cartwheel_api_signals_checkpoint_age_seconds",
    "Seconds since the learner wrote the checkpoint whose online signals "
    "on-demand slates use; NaN while none is loaded.",
)
CHECKPOINT_AGE.set(math.nan)
CHECKPOINT_LOADS = Counter(
    "cartwheel_api_signals_checkpoint_loads_total",
    "Learner checkpoint loads by outcome (loaded, rejected, failed: the "
    "reload thread stopped).",
    ["outcome"],
)
