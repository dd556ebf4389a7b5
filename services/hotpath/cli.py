"""``cartwheel hotpath`` subcommands."""

from __future__ import annotations

import argparse

from services.common.logging import configure_logging

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``hotpath run`` to the ``cartwheel`` command."""
    parser = subparsers.add_parser(
        "hotpath",
        help="consume events, update features in Redis and run the stages",
        description="The hot path. Settings come from CARTWHEEL_HOTPATH_*, "
        "CARTWHEEL_KAFKA_*, CARTWHEEL_REDIS_* and CARTWHEEL_TOPIC_* variables, "
        "and the default stages read CARTWHEEL_LEARNER_* (online learning) and "
        "CARTWHEEL_SCORER_* (candidates, ranking, rules and surfaces). "
        "'cartwheel config' lists them all.",
    )
    commands = parser.add_subparsers(
        dest="hotpath_command", required=True, metavar="COMMAND"
    )
    run_parser = commands.add_parser(
        "run",
        help="run the hot-path consumer until interrupted",
        description="Consume the events topic in the consumer group "
        "CARTWHEEL_HOTPATH_GROUP_ID, apply features, run the stages listed in "
        "CARTWHEEL_HOTPATH_STAGES and publish training examples, with /metrics "
        "on CARTWHEEL_HOTPATH_METRICS_HOST:CARTWHEEL_HOTPATH_METRICS_PORT. The "
        "default stages also read CARTWHEEL_LEARNER_* and CARTWHEEL_SCORER_* "
        "variables; 'cartwheel config' lists them all.",
    )
    run_parser.set_defaults(handler=_run, is_service=True)


def _run(args: argparse.Namespace) -> int:
    from services.hotpath.__main__ import load_checked_settings, run

    settings = load_checked_settings()
    configure_logging(args.log_level or settings.log_level)
    run(settings)
    return 0
