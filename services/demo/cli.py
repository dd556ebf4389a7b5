"""The ``cartwheel demo`` command."""

from __future__ import annotations

import argparse
from pathlib import Path

from services.cli.arguments import integer_at_least
from services.common.settings import load_settings
from services.demo.settings import DemoSettings
from services.demo.state_dir import DemoLock
from services.replay.datasets import DATASETS

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``cartwheel demo``."""
    parser = subparsers.add_parser(
        "demo",
        help="run the whole pipeline on a real dataset and evaluate it",
        description="Start a private broker and redis-server, every service, "
        "replay the dataset in event-time order (the first slice trains the "
        "first multi-task model), evaluate the slates against baselines, print "
        "a summary with the report's path, and stop everything.",
    )
    parser.add_argument(
        "--dataset",
        default="rees46",
        # Only datasets with events can be replayed.
        choices=sorted(name for name, info in DATASETS.items() if info.loader),
        help="registered dataset to replay (see 'cartwheel replay --list'; "
        "default: rees46, the sample committed in data/)",
    )
    parser.add_argument(
        "--path", type=Path, help="read the dataset from this file or folder"
    )
    parser.add_argument(
        "--limit",
        type=integer_at_least(2),
        help="replay only the first N events in event-time order (N >= 2)",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    # Checked before run_demo starts servers and clears the last run's state.
    if args.path is not None and not args.path.exists():
        raise FileNotFoundError(
            f"dataset path {str(args.path)!r} not found; expected the "
            f"{args.dataset} file or folder given to --path"
        )
    settings = load_settings(DemoSettings)
    # A demo already running in the folder is reported before the runner's
    # imports, which take seconds. run_demo takes the lock for the run itself.
    with DemoLock(settings.state_dir.resolve()) as lock:
        if lock.path.is_file():
            lock.acquire()
    # The runner imports every service; importing it here keeps other
    # cartwheel commands from paying for that at start.
    from services.demo.runner import DemoRun, run_demo

    return run_demo(DemoRun(args.dataset, args.path, args.limit), settings)
