"""``cartwheel replay``: publish a dataset or a raw JSON-lines file to Kafka."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from services.cli.arguments import integer_at_least, non_empty_path, positive_number
from services.common.logging import configure_logging
from services.common.settings import load_settings
from services.replay.dataset_argument import DEFAULT_DATASET, describe_unreplayable
from services.replay.datasets import (
    DATASETS,
    AdapterSummary,
    load_dataset,
    replayable_names,
)
from services.replay.errors import ReplayFileError
from services.replay.generated import generate_catalog
from services.replay.jsonl import blank_file_error, verify_replay_file
from services.replay.replayer import Replayer, ReplaySummary, verify_replay_topics
from services.replay.settings import Settings

__all__ = ["add_arguments", "build_parser", "register", "replay_dataset", "replay_file"]


_DESCRIPTION = (
    "Validate and publish a dataset's events to the events topic "
    "(keyed by user_id), after its catalog items and generated promotions "
    "and reviews on the catalog topic. With --file, publish the lines of a "
    "JSON-lines file instead; invalid lines go to the dead-letter topic "
    "with their reason, and blank lines are skipped. Settings come from "
    "CARTWHEEL_REPLAY_*, CARTWHEEL_KAFKA_* and CARTWHEEL_TOPIC_* variables; "
    "the topics must exist ('cartwheel topics create')."
)

_EXIT_STATUS = (
    "Exit status: 0 on success; 1 for invalid input, such as dataset files "
    "that are missing or of another layout, a --file that is not UTF-8 "
    "JSON-lines text, or a --file in which no line is a valid event (after the "
    "summary); 2 for a usage error, such as an unknown dataset or one without "
    "events, a --limit below 1 or a dataset given with --file, invalid "
    "settings, an unreachable broker or a missing topic."
)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``replay`` to the ``cartwheel`` command."""
    parser = subparsers.add_parser(
        "replay",
        help="publish a real dataset or a raw JSON-lines file to Kafka",
        description=_DESCRIPTION,
        epilog=_EXIT_STATUS,
    )
    add_arguments(parser)


def build_parser(prog: str) -> argparse.ArgumentParser:
    """Build a stand-alone parser of the ``replay`` arguments, named ``prog``."""
    parser = argparse.ArgumentParser(
        prog=prog, description=_DESCRIPTION, epilog=_EXIT_STATUS
    )
    add_arguments(parser)
    # Only ``cartwheel`` has --log-level, so CARTWHEEL_REPLAY_LOG_LEVEL applies.
    parser.set_defaults(log_level=None)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``replay`` to ``parser`` and set its handler."""
    names = ", ".join(replayable_names())
    # No default here, so that a dataset given with --file can be detected.
    parser.add_argument(
        "dataset",
        nargs="?",
        help=f"dataset to publish: {names} (default: {DEFAULT_DATASET}, the "
        "committed sample); not with --file",
    )
    parser.add_argument(
        "--path",
        type=Path,
        help="dataset file or folder (default: the dataset's file under "
        "CARTWHEEL_REPLAY_DATA_DIR, or the committed sample for rees46); not "
        "with --file",
    )
    parser.add_argument(
        "--file",
        type=non_empty_path,
        help="publish this JSON-lines file (one event per line, .gz allowed) "
        "instead of a dataset",
    )
    parser.add_argument(
        "--time-scale",
        type=positive_number,
        help="replay at this speed-up of event time, e.g. 60 plays one hour in "
        "one minute (default: as fast as possible)",
    )
    parser.add_argument(
        "--limit",
        type=integer_at_least(1),
        help=(
            "replay at most this many events; with --file, this many non-blank "
            "lines, invalid ones included (default: all)"
        ),
    )
    parser.add_argument(
        "--no-catalog",
        action="store_true",
        help="skip the catalog records (items, generated promotions and reviews)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="hide the progress bar"
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="list the datasets and their paths (marking those not found), then exit",
    )
    parser.set_defaults(handler=functools.partial(_run, parser))


def replay_dataset(
    settings: Settings,
    name: str,
    *,
    path: Path | None = None,
    time_scale: float | None = None,
    limit: int | None = None,
    with_catalog: bool = True,
    show_progress: bool = True,
) -> tuple[AdapterSummary, ReplaySummary]:
    """Load a dataset, then publish its catalog and its events.

    Raises:
        UnknownDatasetError, DatasetUnavailableError, DatasetFileError: the
            dataset cannot be loaded.
        TopicMissingError: a topic is missing.
        ReplayDeliveryError: the broker did not acknowledge every message.
    """
    dataset = load_dataset(
        name,
        settings.data_dir,
        path,
        path_option="--path",
        data_dir_source="CARTWHEEL_REPLAY_DATA_DIR",
    )
    verify_replay_topics(settings)
    replayer = Replayer(settings, show_progress=show_progress)
    catalog_counts = None
    try:
        if with_catalog:
            generated = generate_catalog(
                dataset.events, dataset.items, seed=settings.generated_seed
            )
            catalog_counts = replayer.publish_catalog(
                [*dataset.items, *generated.promotions, *generated.reviews]
            )
        summary = replayer.replay_events(
            dataset.events,
            source=f"dataset:{name}",
            time_scale=time_scale,
            limit=limit,
        )
    finally:
        replayer.close()
    if catalog_counts is not None:
        summary.catalog_by_type = catalog_counts
    return dataset.summary, summary


def replay_file(
    settings: Settings,
    path: Path,
    *,
    time_scale: float | None = None,
    limit: int | None = None,
    show_progress: bool = True,
) -> ReplaySummary:
    """Publish the lines of a JSON-lines file, dead-lettering the invalid ones.

    Raises:
        FileNotFoundError: the file does not exist.
        ReplayFileError: the file is empty, has only blank lines, is not
            UTF-8 text or cannot be read to its end.
        TopicMissingError: a topic is missing.
        ReplayDeliveryError: the broker did not acknowledge every message.
    """
    verify_replay_file(path)
    verify_replay_topics(settings)
    replayer = Replayer(settings, show_progress=show_progress)
    try:
        return replayer.replay_file(path, time_scale=time_scale, limit=limit)
    finally:
        replayer.close()


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    _check_file_alone(parser, args)
    _check_list_alone(parser, args)
    if args.dataset is not None and (problem := describe_unreplayable(args.dataset)):
        parser.error(problem)
    settings = load_settings(Settings)
    configure_logging(args.log_level or settings.log_level)
    if args.list:
        _write(_dataset_lines(settings))
        return 0
    show_progress = not args.no_progress
    if args.file is not None:
        summary = replay_file(
            settings,
            args.file,
            time_scale=args.time_scale,
            limit=args.limit,
            show_progress=show_progress,
        )
        _write(summary.lines())
        if summary.events_published == 0:
            raise _no_event_error(args.file, summary, settings)
        return 0
    adapter_summary, summary = replay_dataset(
        settings,
        args.dataset or DEFAULT_DATASET,
        path=args.path,
        time_scale=args.time_scale,
        limit=args.limit,
        with_catalog=not args.no_catalog,
        show_progress=show_progress,
    )
    _write([*adapter_summary.lines(), *summary.lines()])
    return 0


def _check_file_alone(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> None:
    """Stop with a usage error when --file comes with a dataset, --path or --list.

    --file publishes the file's lines instead of a dataset, so without this
    check the dataset would be ignored without a word.
    """
    others = []
    if args.dataset is not None:
        others.append(f"dataset {args.dataset!r}")
    if args.path is not None:
        others.append(f"--path {str(args.path)!r}")
    if args.file is not None and args.list:
        parser.error(
            f"--file {str(args.file)!r} given with --list; --list only lists "
            "the datasets, so give one of the two"
        )
    if args.file is not None and others:
        parser.error(
            f"--file {str(args.file)!r} given with {' and '.join(others)}; "
            "--file publishes that file's events instead of a dataset, so give "
            "either --file or a dataset"
        )


def _check_list_alone(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> None:
    """Stop with a usage error when --list comes with an option that replays."""
    if not args.list:
        return
    replay_options = [
        option
        for option, value in (
            ("a dataset", args.dataset),
            ("--path", args.path),
            ("--time-scale", args.time_scale),
            ("--limit", args.limit),
        )
        if value is not None
    ]
    replay_options += [
        option
        for option, is_set in (
            ("--no-catalog", args.no_catalog),
            ("--no-progress", args.no_progress),
        )
        if is_set
    ]
    if replay_options:
        parser.error(
            f"--list given with {' and '.join(replay_options)}; --list only lists the "
            "datasets and replays nothing, so give one or the other"
        )


def _no_event_error(
    path: Path, summary: ReplaySummary, settings: Settings
) -> ReplayFileError:
    """Build the error for a file that published no event.

    A file without one valid line is most likely not a file of events (a CSV
    export, for example), so the command fails after its summary instead of
    reporting success. A file of only blank lines fails in
    :func:`verify_replay_file`, before the replay, when it fits in the block
    that function reads; a longer one fails here with the same message.
    """
    if summary.messages_rejected == 0:
        return blank_file_error(path)
    return ReplayFileError(
        f"none of the {summary.messages_rejected} line(s) read from replay file "
        f"{str(path)!r} is a valid event, so each went to the dead-letter topic "
        f"{settings.topics.dead_letters!r} with its reason; expected one JSON "
        "event object per line, as schemas/json/event.schema.json describes"
    )


def _dataset_lines(settings: Settings) -> list[str]:
    lines = []
    for name, info in sorted(DATASETS.items()):
        if info.loader is None:
            lines.append(f"{name}: not replayable: {info.unavailable_reason}")
        else:
            path = info.default_path(settings.data_dir)
            missing = "" if path.exists() else " (missing)"
            lines.append(f"{name}: {path}{missing}")
        lines.append(f"    {info.description}")
    return lines


def _write(lines: list[str]) -> None:
    # The summary is the command's output, so it goes to stdout.
    sys.stdout.write("\n".join(lines) + "\n")
