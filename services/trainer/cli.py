"""``cartwheel trainer`` subcommands."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

from services.common.logging import configure_logging
from services.common.settings import load_settings
from services.replay.dataset_argument import add_dataset_argument
from services.replay.settings import DEFAULT_DATA_DIR
from services.trainer.settings import MAX_TORCH_THREADS, TrainerSettings

__all__ = ["add_compare_arguments", "register"]

# The pattern of CARTWHEEL_REDIS_KEY_PREFIX, so that compare keys are named alike.
_KEY_PREFIX = re.compile(r"[A-Za-z0-9_\-]{1,32}")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``trainer run``, ``trainer compare`` and ``trainer versions``."""
    parser = subparsers.add_parser(
        "trainer",
        help="train, gate and publish the multi-task ranker",
        description="The ranker's trainer. Settings come from CARTWHEEL_TRAINER_*, "
        "CARTWHEEL_KAFKA_*, CARTWHEEL_REDIS_* and CARTWHEEL_TOPIC_* variables.",
    )
    commands = parser.add_subparsers(
        dest="trainer_command", required=True, metavar="COMMAND"
    )
    run_parser = commands.add_parser(
        "run",
        help="read training examples and refresh the ranker until interrupted",
        description="Fill a sliding window from the training-examples topic, "
        "refresh every CARTWHEEL_TRAINER_REFRESH_INTERVAL_SECONDS or on a "
        "retrain request, promote a challenger only if it is not worse than the "
        "champion, and announce it on the models topic.",
    )
    run_parser.set_defaults(handler=_run, is_service=True)
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
        type=_redis_url,
        default=None,
        help="redis:// URL to use instead of a private redis-server (keys are "
        "written under --key-prefix)",
    )
    parser.add_argument(
        "--key-prefix",
        type=_key_prefix,
        default="cwcompare",
        help="Redis key prefix: 1-32 letters, digits, '_' or '-' (default: cwcompare)",
    )
    parser.add_argument(
        "--threads",
        type=_thread_count,
        default=2,
        help=f"PyTorch CPU threads, 1 to {MAX_TORCH_THREADS} (default: 2)",
    )
    parser.add_argument(
        "--seeds",
        type=_positive_int,
        default=5,
        help="train every model with seeds 0 to N-1, the same split for all; "
        "a positive integer (default: 5)",
    )
    parser.add_argument(
        "--output",
        type=_output_path,
        default=None,
        help="write results as JSON to this file, in an existing writable folder",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _redis_url(text: str) -> str:
    # The value is not echoed, because a Redis URL can carry a password.
    scheme = urlsplit(text).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise argparse.ArgumentTypeError(
            f"expected a redis://, rediss:// or unix:// URL, got scheme {scheme!r}"
        )
    return text


def _thread_count(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_TORCH_THREADS:
        raise argparse.ArgumentTypeError(
            f"expected 1 to {MAX_TORCH_THREADS} threads, got {text!r}"
        )
    return value


def _key_prefix(text: str) -> str:
    if not _KEY_PREFIX.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"expected 1-32 letters, digits, '_' or '-', got {text!r}"
        )
    return text


def _output_path(text: str) -> Path:
    """Check that the results file can be written, before minutes of training."""
    if not text:
        raise argparse.ArgumentTypeError("expected a file path, got ''")
    path = Path(text)
    folder = path.parent
    if path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{text!r} is a folder; expected a file path such as "
            f"{str(path / 'compare.json')!r}"
        )
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(
            f"the folder {str(folder)!r} does not exist; create it first"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(
            f"the folder {str(folder)!r} is not writable by this user"
        )
    return path
