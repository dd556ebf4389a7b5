"""The ``cartwheel bench`` command."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import time
from pathlib import Path

from services.bench.generator import generate_events
from services.bench.report import summary_lines, write_report
from services.bench.runner import (
    BenchRun,
    build_shop,
    calibrate,
    run_bench,
    say_to_stderr,
)
from services.cli.arguments import integer_at_least
from services.common.settings import load_settings
from services.replay.datasets import DATASETS
from services.replay.settings import Settings as ReplaySettings

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``cartwheel bench``."""
    parser = subparsers.add_parser(
        "bench",
        help="run the hot path end to end on a synthetic load fitted on real data",
        description="Fit a load profile (user activity, item popularity, catalog, "
        "session lengths and gaps, funnel rates, locality) on real samples, "
        "generate a synthetic stream of many more users and items from it, "
        "start a private broker and redis-server, run the hot path on the "
        "stream and report sustained events/s, event-to-slate latency, Redis "
        "memory per user and the broker's pass-through. Stops everything it "
        "started, also on Ctrl-C or SIGTERM.",
    )
    parser.add_argument(
        "--events",
        type=_positive_int,
        default=100_000,
        help="events of the measured phase (default: 100000)",
    )
    parser.add_argument(
        "--rate",
        type=_positive_float,
        help="events per second to offer (default: as fast as the hot path "
        "takes them, up to --max-backlog waiting)",
    )
    parser.add_argument(
        "--seed", type=integer_at_least(0), default=1, help="seed (default: 1)"
    )
    parser.add_argument(
        "--calibrate-on",
        action="append",
        choices=sorted(name for name, info in DATASETS.items() if info.loader),
        metavar="DATASET",
        help="dataset to fit the profile on; repeat to pool several (default: "
        "rees46, the sample committed in data/)",
    )
    parser.add_argument(
        "--max-seconds",
        type=_positive_float,
        help="end the measured phase after this many seconds (default: wait for "
        "every event's slate); calibration, warm-up, training and the "
        "pass-through come on top",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=Path("reports/bench"),
        metavar="PATH",
        help="folder for bench.md and bench.json (default: reports/bench)",
    )
    parser.add_argument(
        "--warmup-events",
        type=_non_negative_int,
        default=5_000,
        help="events before the measured phase that train the ranker; 0 keeps "
        "the heuristic ranker (default: 5000)",
    )
    parser.add_argument(
        "--max-backlog",
        type=_positive_int,
        default=20_000,
        help="most events sent that have no slate yet (default: 20000)",
    )
    parser.add_argument(
        "--instances",
        type=_positive_int,
        default=1,
        help="hot-path processes in one consumer group (default: 1)",
    )
    parser.add_argument("--users", type=_positive_int, help="users of the shop")
    parser.add_argument("--items", type=_positive_int, help="items of the shop")
    parser.add_argument(
        "--profile-only",
        action="store_true",
        help="print the fitted profile as JSON and exit",
    )
    parser.add_argument(
        "--generate-only",
        action="store_true",
        help="only generate (with validation) and serialize --events events, "
        "with no servers, and print the generation rate",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    run = BenchRun(
        events=args.events,
        data_dir=load_settings(ReplaySettings).data_dir,
        rate=args.rate,
        seed=args.seed,
        calibrate_on=tuple(args.calibrate_on or ("rees46",)),
        max_seconds=args.max_seconds,
        warmup_events=args.warmup_events,
        max_backlog=args.max_backlog,
        instances=args.instances,
        users=args.users,
        items=args.items,
    )
    if args.profile_only:
        sys.stdout.write(calibrate(run).model_dump_json(indent=2) + "\n")
        return 0
    if args.generate_only:
        return _generate_only(run)
    created = _check_report_folder(args.report)
    try:
        result = run_bench(run, say_to_stderr)
    except BaseException:
        # A run that ends early leaves none of the empty folders it created.
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    command = shlex.join(["cartwheel", *sys.argv[1:]])
    # The summary comes first, so a failed report write loses no number.
    sys.stdout.write("\n".join(summary_lines(result)) + "\n")
    files = write_report(result, args.report, command)
    sys.stdout.write(f"report: {files.markdown.resolve()}\n")
    return 0


def _check_report_folder(folder: Path) -> list[Path]:
    """Create the report folder now, so that a bad path fails before the run.

    Returns:
        The folders created, the deepest first.

    Raises:
        OSError: the folder cannot be created or is not writable.
    """
    created = [
        path for path in (folder, *folder.absolute().parents) if not path.exists()
    ]
    folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"report folder {folder} is not writable")
    return created


def _generate_only(run: BenchRun) -> int:
    profile = calibrate(run)
    started = time.perf_counter()
    shop = build_shop(run, profile)
    built = time.perf_counter()
    size = 0
    for event in generate_events(shop, run.events, run.seed):
        size += len(event.model_dump_json())
    generated = time.perf_counter()
    sys.stdout.write(
        f"shop: {shop.size.users:,} users, {shop.size.items:,} items, built in "
        f"{built - started:.1f} s\n"
        f"generated and serialized {run.events:,} events in "
        f"{generated - built:.1f} s: {run.events / (generated - built):,.0f} "
        f"events/s, {size / run.events:.0f} bytes each\n"
    )
    return 0


def _positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(value)


def _non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text!r}")
    return int(value)


def _positive_float(text: str) -> float:
    value = _number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return float(value)


def _number(text: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
