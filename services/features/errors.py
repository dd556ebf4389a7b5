"""Errors raised by the feature and catalog writers."""

from __future__ import annotations

from schemas.errors import CartwheelError

__all__ = ["CatalogKeyError"]


class CatalogKeyError(CartwheelError):
    """Raised when a catalog key is not ``<kind>:<id>`` or names another kind."""
