"""Prometheus metrics of the catalog consumer.

Labels come from small fixed sets: ``kind`` (item, promotion, review, or
unknown for a key without one) and ``outcome`` (stored, deleted, rejected, or
rejected_again for an invalid record that an earlier read of its partition
dead-lettered).
"""

from __future__ import annotations

from prometheus_client import Counter

__all__ = ["CATALOG_RECORDS", "CATALOG_RELOADS", "CATALOG_RETRIES"]

CATALOG_RECORDS = Counter(
    "cartwheel_features_catalog_records_total",
    "Catalog messages handled, by kind and outcome",
    ["kind", "outcome"],
)
CATALOG_RETRIES = Counter(
    "cartwheel_features_catalog_retries_total",
    "Catalog batches retried because Redis or the broker failed",
)
CATALOG_RELOADS = Counter(
    "cartwheel_features_catalog_reloads_total",
    "Times a catalog consumer read its partitions again from the start because "
    "Redis had lost them",
)
