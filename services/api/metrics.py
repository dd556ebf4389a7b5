"""Prometheus metrics of the HTTP API.

``route`` is the route template (e.g. ``/v1/users/{user_id}/slates/{surface}``),
never the concrete path, so its label set stays small.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = ["EVENTS_INGESTED", "REQUEST_SECONDS", "SLATE_READS"]

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
