"""Errors raised by the evaluator."""

from __future__ import annotations

from services.common.errors import CartwheelError, InfrastructureError

__all__ = ["NoSlatesError", "ReplayReadTimeoutError"]


class NoSlatesError(CartwheelError):
    """Raised when the topics hold no products slate, so nothing was evaluated."""


class ReplayReadTimeoutError(InfrastructureError):
    """Raised when the topics are not read up to their high watermarks in time."""
