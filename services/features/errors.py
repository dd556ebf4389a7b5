"""Errors raised by the feature and catalog writers."""

from __future__ import annotations

from schemas.deadletters import RejectionReason
from schemas.errors import CartwheelError
from schemas.validation import Rejection

__all__ = ["CatalogKeyError", "CatalogRecordError"]


class CatalogRecordError(CartwheelError):
    """Raised when a catalog message is not a valid catalog record.

    Attributes:
        rejection: the reason and message for the message's dead letter.
    """

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(f"{rejection.reason}: {rejection.message}")
        self.rejection = rejection


class CatalogKeyError(CatalogRecordError):
    """Raised when a catalog key is not ``<kind>:<id>`` or names another record."""

    def __init__(self, message: str) -> None:
        super().__init__(Rejection(RejectionReason.INVALID_ID, message))
