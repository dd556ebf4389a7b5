"""The error that tests put in place of loading a sample."""

from __future__ import annotations


class SampleLoadedError(Exception):
    """Raised in place of loading a sample, so that a script stops there."""
