"""Logging set-up for every process, called once from ``__main__``."""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    """Send log records at ``level`` and above to stderr, one line each.

    librdkafka's and Faust's chatter is kept at WARNING unless ``level`` is DEBUG.
    """
    logging.basicConfig(
        level=level.upper(), format=_FORMAT, stream=sys.stderr, force=True
    )
    if level.upper() != "DEBUG":
        for noisy in ("faust", "mode", "aiokafka", "urllib3", "matplotlib"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
