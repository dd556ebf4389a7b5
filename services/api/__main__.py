"""Run the HTTP API: ``python -m services.api``."""

from __future__ import annotations

import logging
import sys

from services.api.server import serve
from services.api.settings import ApiSettings
from services.common.entrypoint import parse_service_arguments, run_entry_point
from services.common.logging import configure_logging
from services.common.settings import load_settings, masked_settings

logger = logging.getLogger(__name__)


def main() -> None:
    """Load settings, configure logging and serve until interrupted."""
    settings = load_settings(ApiSettings)
    configure_logging(settings.log_level)
    logger.info("api settings %s", masked_settings(settings))
    serve(settings)


if __name__ == "__main__":
    parse_service_arguments("services.api", __doc__)
    sys.exit(run_entry_point("services.api", main))
