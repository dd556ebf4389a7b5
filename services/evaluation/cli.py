"""The ``cartwheel evaluate`` command."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

from services.cli.arguments import positive_number
from services.common.lifecycle import ensure_writable_directory
from services.common.settings import (
    CommandLineValue,
    KafkaSettings,
    load_settings,
    masked_settings,
)
from services.evaluation.consumer import read_topics
from services.evaluation.errors import NoSlatesError
from services.evaluation.prequential import PrequentialEvaluator
from services.evaluation.report import summary_lines, write_report
from services.evaluation.settings import EvaluationSettings

__all__ = ["register", "run_evaluate"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``evaluate`` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score published slates and baselines prequentially and write a report",
        description=(
            "Read the events, catalog and recommendations.<surface> topics from "
            "the beginning, score each products slate against the user's next "
            "event beside four baselines computed on the same replay (most "
            "popular, trending, co-visitation, session-kNN), and write "
            "report.md, metrics.json and PNG plots. Settings come from "
            "CARTWHEEL_EVALUATION_* and CARTWHEEL_KAFKA_* variables; the "
            "options below override them."
        ),
    )
    parser.add_argument(
        "--output",
        help="report directory (default: CARTWHEEL_EVALUATION_REPORT_DIR, "
        "else reports/evaluation)",
    )
    parser.add_argument(
        "--bootstrap", help="comma-separated host:port list of Kafka brokers"
    )
    parser.add_argument(
        "--group-id", help="consumer group id of the evaluator; it never commits"
    )
    parser.add_argument(
        "--throughput",
        type=positive_number,
        help="events per second the system processed, when measured elsewhere; "
        "estimated from the slates' generated_at spread when omitted",
    )
    parser.add_argument(
        "--score-from",
        help="RFC 3339 time with offset, as in events, such as "
        "2019-10-01T01:00:00+00:00; earlier events only train the baselines "
        "(for example a slice that trained the first model)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        help="seconds allowed to read every topic to its end (default 300)",
    )
    parser.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    """Run the evaluation that ``args`` describe and print a summary.

    Returns:
        the process exit status, 0 on success.

    Raises:
        NoSlatesError: the topics hold no products slate; the summary and the
            report are written first.
    """
    settings = load_settings(EvaluationSettings, **_overrides(args))
    # The report is written only after every topic is read, so a bad report
    # folder is caught here instead of after minutes of reading.
    ensure_writable_directory(
        settings.report_dir,
        "CARTWHEEL_EVALUATION_REPORT_DIR",
        option=None if args.output is None else "--output",
    )
    logger.info("evaluation starting settings=%s", masked_settings(settings))
    evaluator = PrequentialEvaluator(settings)
    started = time.perf_counter()
    read = read_topics(evaluator, settings)
    read_seconds = time.perf_counter() - started
    result = evaluator.evaluate(args.throughput, skipped_records=read.malformed)
    score_seconds = time.perf_counter() - started - read_seconds
    files = write_report(result, settings.report_dir)
    events = result.inputs.events
    logger.info(
        "evaluation finished events=%s read_seconds=%.2f score_seconds=%.2f "
        "events_per_second=%.0f report=%s",
        events,
        read_seconds,
        score_seconds,
        events / score_seconds if score_seconds > 0 else 0.0,
        files.markdown,
    )
    has_slates = bool(result.inputs.slates.get("products"))
    # Without slates every metric of the system is 0, which reads like a
    # result, so only the report's path is printed before the error.
    lines = summary_lines(result) if has_slates else []
    sys.stdout.write("\n".join([*lines, f"report: {files.markdown}"]) + "\n")
    if not has_slates:
        raise NoSlatesError(
            f"no products slate on topic "
            f"{settings.topics.recommendations('products')!r} "
            f"({events} events read), so the report measures nothing; "
            "expected the hot path to have processed the events: check that it "
            "runs ('cartwheel hotpath run') and reads the same topics, and that "
            "its log does not report the events as dropped duplicates, as after "
            "a second replay of the same events into topics created again"
        )
    return 0


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if args.output is not None:
        overrides["report_dir"] = CommandLineValue("--output", args.output)
    if args.bootstrap is not None:
        overrides["kafka"] = load_settings(
            KafkaSettings, bootstrap=CommandLineValue("--bootstrap", args.bootstrap)
        )
    if args.group_id is not None:
        overrides["group_id"] = CommandLineValue("--group-id", args.group_id)
    if args.score_from is not None:
        overrides["score_from"] = CommandLineValue("--score-from", args.score_from)
    if args.timeout is not None:
        overrides["read_timeout_seconds"] = CommandLineValue("--timeout", args.timeout)
    return overrides
