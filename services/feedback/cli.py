"""``cartwheel feedback`` subcommands."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import redis

from services.cli.arguments import positive_number_at_most
from services.common.logging import configure_logging
from services.common.settings import load_settings, secret_values
from services.feedback.reader import outcome_counts
from services.feedback.settings import FeedbackSettings

__all__ = ["register"]

# Window counts expire after CARTWHEEL_FEEDBACK_RETENTION_SECONDS, so a
# century reaches back past every one of them, and it keeps the start of the
# report a date that datetime can hold.
_MAX_REPORT_HOURS = 100 * 365 * 24


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``feedback run`` and ``feedback report`` to the ``cartwheel`` command."""
    parser = subparsers.add_parser(
        "feedback",
        help="join published slates with later events (Faust worker)",
        description="Run the feedback worker or print its windowed outcome counts. "
        "Settings come from CARTWHEEL_FEEDBACK_*, CARTWHEEL_KAFKA_*, "
        "CARTWHEEL_REDIS_* and CARTWHEEL_TOPIC_* variables.",
    )
    commands = parser.add_subparsers(
        dest="feedback_command", required=True, metavar="COMMAND"
    )

    run_parser = commands.add_parser(
        "run",
        help="run the feedback worker until interrupted",
        description="Run the Faust worker that counts impressions, hits, clicks, "
        "cart adds and purchases per surface and model version, with /metrics "
        "on CARTWHEEL_FEEDBACK_METRICS_HOST:CARTWHEEL_FEEDBACK_METRICS_PORT.",
    )
    run_parser.set_defaults(handler=_run, is_service=True)

    report_parser = commands.add_parser(
        "report",
        help="print outcome counts and rates per surface and model version",
        description="Print the counts stored in Redis for slates published in "
        "the last --hours hours.",
    )
    report_parser.add_argument(
        "--hours",
        type=positive_number_at_most(_MAX_REPORT_HOURS),
        default=1.0,
        help="how far back to count, in hours, above 0 and at most "
        f"{_MAX_REPORT_HOURS} (default: 1)",
    )
    report_parser.set_defaults(handler=_report)


def _run(args: argparse.Namespace) -> int:
    from services.feedback.service import run

    settings = load_settings(FeedbackSettings)
    configure_logging(
        args.log_level or settings.log_level, secrets=secret_values(settings)
    )
    run(settings)
    return 0


def _report(args: argparse.Namespace) -> int:
    settings = load_settings(FeedbackSettings)
    since = datetime.now(UTC) - timedelta(hours=args.hours)
    client = redis.Redis.from_url(settings.redis.url.get_secret_value())
    try:
        counts = outcome_counts(client, settings.redis.key_prefix, since)
    finally:
        client.close()
    pairs = sorted({(surface, version) for surface, version, _ in counts})
    outcomes = ["impression", "hit", "click", "cart_add", "purchase"]
    lines = ["surface\tmodel_version\t" + "\t".join(outcomes) + "\thit_rate"]
    for surface, version in pairs:
        row = [counts[(surface, version, outcome)] for outcome in outcomes]  # type: ignore[index]
        rate = f"{row[1] / row[0]:.4f}" if row[0] else "-"
        lines.append(f"{surface}\t{version}\t" + "\t".join(map(str, row)) + f"\t{rate}")
    # The report is the command's output, so it goes to stdout.
    print("\n".join(lines))  # noqa: T201
    return 0
