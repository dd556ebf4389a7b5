"""Errors raised while reading or writing Cartwheel's wire formats."""

from __future__ import annotations

__all__ = ["CartwheelError", "SchemaError"]


class CartwheelError(Exception):
    """Base class of every error that Cartwheel raises on purpose."""


class SchemaError(CartwheelError):
    """Raised when a document does not match its Cartwheel schema."""
