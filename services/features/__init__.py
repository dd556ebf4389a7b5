"""Feature writing off the hot path: the catalog consumer and its writer.

The per-event feature updates run inside the hot-path consumer
(``services.hotpath``) through :class:`services.common.redis_features.FeatureStore`.
"""

from __future__ import annotations

from services.features.catalog import CatalogWriter, parse_catalog_key
from services.features.marker import CatalogMarker

__all__ = ["CatalogMarker", "CatalogWriter", "parse_catalog_key"]
