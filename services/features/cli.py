"""``cartwheel catalog`` subcommands."""

from __future__ import annotations

import argparse

from services.common.logging import configure_logging
from services.common.settings import load_settings
from services.features.settings import CatalogSettings

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``catalog run`` to the ``cartwheel`` command."""
    parser = subparsers.add_parser(
        "catalog",
        help="store items, promotions and reviews from the catalog topic in Redis",
        description="The catalog consumer. Settings come from CARTWHEEL_FEATURES_*, "
        "CARTWHEEL_KAFKA_*, CARTWHEEL_REDIS_* and CARTWHEEL_TOPIC_* variables.",
    )
    commands = parser.add_subparsers(
        dest="catalog_command", required=True, metavar="COMMAND"
    )
    run_parser = commands.add_parser(
        "run",
        help="run the catalog consumer until interrupted",
        description="Consume the catalog topic in the consumer group "
        "CARTWHEEL_FEATURES_GROUP_ID and store each record in Redis; null "
        "values (tombstones) delete the entity.",
    )
    run_parser.set_defaults(handler=_run, is_service=True)


def _run(args: argparse.Namespace) -> int:
    from services.features.__main__ import run

    settings = load_settings(CatalogSettings)
    configure_logging(args.log_level or settings.log_level)
    run(settings)
    return 0
