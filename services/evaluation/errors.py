"""Errors raised by the evaluator."""

from __future__ import annotations

from services.common.errors import InfrastructureError

__all__ = ["ReplayReadTimeoutError"]


class ReplayReadTimeoutError(InfrastructureError):
    """Raised when the topics are not read up to their high watermarks in time."""
