"""Errors raised by the replay tool and its dataset adapters."""

from __future__ import annotations

from schemas.errors import CartwheelError

__all__ = [
    "DatasetFileError",
    "DatasetUnavailableError",
    "ReplayDeliveryError",
    "ReplayFileError",
    "UnknownDatasetError",
]


class DatasetFileError(CartwheelError):
    """Raised when a dataset file or folder is missing, has an unexpected layout,
    or contains no event of the dataset it was read as."""


class UnknownDatasetError(CartwheelError):
    """Raised when a dataset name is not in the registry."""


class DatasetUnavailableError(CartwheelError):
    """Raised for a registered dataset that contains no events to replay."""


class ReplayDeliveryError(CartwheelError):
    """Raised when the broker did not acknowledge every replayed message."""


class ReplayFileError(CartwheelError):
    """Raised when a JSON-lines replay file cannot be read to its end."""
