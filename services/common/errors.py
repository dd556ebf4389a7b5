"""Errors raised by the services' shared code."""

from __future__ import annotations

from schemas.errors import CartwheelError

__all__ = [
    "CartwheelError",
    "InfrastructureError",
    "InvalidSettingsError",
    "TopicMissingError",
]


class InvalidSettingsError(CartwheelError):
    """Raised at startup when an environment variable holds an invalid value."""


class InfrastructureError(CartwheelError):
    """Raised when a broker or redis-server cannot be started, reached or stopped."""


class TopicMissingError(CartwheelError):
    """Raised when a topic that a service needs does not exist or is misconfigured."""
