"""Errors raised by the evaluator."""

from __future__ import annotations

from schemas.errors import CartwheelError

__all__ = ["ReplayReadTimeoutError"]


class ReplayReadTimeoutError(CartwheelError):
    """Raised when the topics are not read up to their high watermarks in time."""
