"""``cartwheel trainer`` subcommands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services.common.logging import configure_logging
from services.common.settings import load_settings
from services.replay.dataset_argument import add_dataset_argument
from services.replay.settings import DEFAULT_DATA_DIR
from services.trainer.settings import TrainerSettings

__all__ = ["add_compare_arguments", "register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``trainer run``, ``trainer compare`` and ``trainer versions``."""
    parser = subparsers.add_parser(
        "trainer",
        help="train, gate and publish the multi-task ranker",
        description="The ranker's trainer. Settings come from CARTWHEEL_TRAINER_*, "
        "CARTWHEEL_KAFKA_*, CARTWHEEL_REDIS_* and CARTWHEEL_TOPIC_* variables.",
    )
    commands = parser.add_subparsers(dest="trainer_command", required=True)
    run_parser = commands.add_parser(
        "run",
        help="read training examples and refresh the ranker until interrupted",
        description="Fill a sliding window from the training-examples topic, "
        "refresh every CARTWHEEL_TRAINER_REFRESH_INTERVAL_SECONDS or on a "
        "retrain request, promote a challenger only if it is not worse than the "
        "champion, and announce it on the models topic.",
    )
    run_parser.set_defaults(handler=_run)
    compare_parser = commands.add_parser(
        "compare",
        help="compare the multi-task ranker with single-task baselines",
        description="Replay a real dataset through the feature store (a private "
        "redis-server unless --redis-url is given), train the multi-task model "
        "and one single-task model per task on the same split and seeds, and "
        "print per-task AUC and MRR on the newest 20% of events.",
    )
    add_compare_arguments(compare_parser)
    compare_parser.set_defaults(handler=_compare)
    versions_parser = commands.add_parser(
        "versions",
        help="list the saved ranker versions and the champion",
        description="List the artifacts under CARTWHEEL_TRAINER_REGISTRY_DIR, "
        "oldest first, marking the champion.",
    )
    versions_parser.set_defaults(handler=_versions)


def _run(args: argparse.Namespace) -> int:
    from services.trainer.__main__ import run

    settings = load_settings(TrainerSettings)
    configure_logging(args.log_level or settings.log_level)
    run(settings)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from services.trainer.compare import run

    return run(args)


def _versions(args: argparse.Namespace) -> int:
    from models.registry import ModelRegistry

    settings = load_settings(TrainerSettings)
    folder = settings.registry_dir.absolute()
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(
            f"the registry folder {folder} (CARTWHEEL_TRAINER_REGISTRY_DIR) is "
            "not a folder; expected a folder for the ranker artifacts"
        )
    registry = ModelRegistry(settings.registry_dir)
    versions = registry.versions(settings.model_name)
    if not versions:
        # The note goes to stderr, so stdout stays a list of versions. A fresh
        # install has no registry folder until the trainer saves a version.
        state = "does not exist yet" if not folder.exists() else "contains none"
        sys.stderr.write(
            f"no versions of {settings.model_name} found: the registry folder "
            f"{folder} (CARTWHEEL_TRAINER_REGISTRY_DIR) {state}; "
            "'cartwheel trainer run' saves them\n"
        )
        return 0
    champion = registry.champion_version(settings.model_name)
    for version in versions:
        marker = "  champion" if version == champion else ""
        sys.stdout.write(f"{version}{marker}\n")
    return 0


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the comparison's options to a parser."""
    add_dataset_argument(parser)
    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="folder of the datasets"
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        help="redis:// URL to use instead of a private redis-server (keys are "
        "written under --key-prefix)",
    )
    parser.add_argument("--key-prefix", default="cwcompare", help="Redis key prefix")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch CPU threads")
    parser.add_argument(
        "--seeds",
        type=int,
        default=5,
        help="train every model with seeds 0 to N-1 (same split for all)",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="write results as JSON here"
    )
