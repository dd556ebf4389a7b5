"""Logging set-up for every process, called once from ``__main__``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

__all__ = ["SecretMaskingFilter", "configure_logging"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_MASK = "**********"


class SecretMaskingFilter(logging.Filter):
    """Replace known secret strings in a record's formatted message.

    Args:
        secrets: the exact strings to hide, such as passwords from settings.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is hidden whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        masked = message
        for secret in self._secrets:
            masked = masked.replace(secret, _MASK)
        if masked != message:
            record.msg = masked
            record.args = None
        return True


def configure_logging(level: str = "INFO", *, secrets: Iterable[str] = ()) -> None:
    """Send log records at ``level`` and above to stderr, one line each.

    librdkafka's and Faust's chatter is kept at WARNING unless ``level`` is
    DEBUG. Every string in ``secrets`` (see
    :func:`services.common.settings.secret_values`) is replaced by
    ``**********`` in every line.
    """
    logging.basicConfig(
        level=level.upper(), format=_FORMAT, stream=sys.stderr, force=True
    )
    masking = SecretMaskingFilter(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(masking)
    if level.upper() != "DEBUG":
        for noisy in (
            "faust",
            "mode",
            "aiokafka",
            "urllib3",
            "matplotlib",
            "librdkafka",
        ):
            logging.getLogger(noisy).setLevel(logging.WARNING)
