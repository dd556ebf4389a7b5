"""``cartwheel learner``: evaluate the online models and inspect checkpoints."""

from __future__ import annotations

import argparse
import stat
import sys
import uuid
from pathlib import Path

from services.cli.arguments import integer_at_least
from services.common.entrypoint import write_error
from services.common.settings import load_settings
from services.learner.settings import LearnerSettings
from services.replay.dataset_argument import add_dataset_argument, dataset_name

__all__ = ["register"]

# Exit statuses of verify-checkpoint, following grep and diff: 1 when the check
# fails, 2 when there is nothing to check. Invalid settings also exit with 2.
_REJECTED_STATUS = 1
_UNUSABLE_PATH_STATUS = 2


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``learner`` to the ``cartwheel`` command."""
    parser = subparsers.add_parser(
        "learner",
        help="evaluate the online models, verify their checkpoints",
        description="Tools for the online-learning stage. Settings come from "
        "CARTWHEEL_LEARNER_* and CARTWHEEL_REDIS_* variables.",
    )
    commands = parser.add_subparsers(
        dest="learner_command", required=True, metavar="COMMAND"
    )

    evaluate = commands.add_parser(
        "evaluate",
        help="replay a dataset through features and learning, report AUCs",
        description="Replay a dataset in event-time order through the feature "
        "store and the learning stage on a fresh key prefix in the configured "
        "Redis, then print the cart-add and purchase models' AUC beside the "
        "item's smoothed historical rate used alone as a score. The keys are "
        "deleted afterwards. The models always start fresh: the command reads, "
        "locks and writes no checkpoint and creates nothing in "
        "CARTWHEEL_LEARNER_CHECKPOINT_DIR, so it can run beside a hot path.",
    )
    add_dataset_argument(evaluate)
    evaluate.add_argument(
        "--path", type=Path, help="dataset file or folder (default: its usual place)"
    )
    evaluate.add_argument(
        "--limit",
        type=integer_at_least(1),
        help="replay at most this many events (default: all)",
    )
    evaluate.add_argument(
        "--batch-size",
        type=integer_at_least(1),
        default=500,
        help="events per batch (default: 500)",
    )
    evaluate.set_defaults(handler=_evaluate)

    verify = commands.add_parser(
        "verify-checkpoint",
        help="verify a checkpoint and print its model versions",
        description="Check a checkpoint's signature (or digest) with the "
        "configured CARTWHEEL_LEARNER_CHECKPOINT_KEY and print the model "
        "versions it holds.",
        epilog="Exit status: 0 when the checkpoint is valid, 1 when the learner "
        "would reject it on start, 2 when there is no file to check (the path "
        "is empty, missing, unreadable, too long or not a regular file) or a "
        "setting is invalid.",
    )
    verify.add_argument(
        "path",
        nargs="?",
        type=_checkpoint_path,
        help="checkpoint file (default: this instance's checkpoint)",
    )
    verify.set_defaults(handler=_verify)


def _evaluate(args: argparse.Namespace) -> int:
    dataset = dataset_name(args)
    # River, PyTorch and the feature store load here, so that the other
    # cartwheel commands start without them.
    import redis

    from services.common.redis_features import FeatureStore
    from services.learner.evaluation import replay_prequential
    from services.learner.stage import LearningStage
    from services.replay.datasets import load_dataset

    base = load_settings(LearnerSettings)
    prefix = f"evaluate-{uuid.uuid4().hex[:8]}"
    settings = base.model_copy(
        update={"redis": base.redis.model_copy(update={"key_prefix": prefix})}
    )
    events = load_dataset(
        dataset,
        settings.data_dir,
        args.path,
        path_option="--path",
        data_dir_source="CARTWHEEL_LEARNER_DATA_DIR",
    ).events
    if args.limit is not None:
        events = events[: args.limit]

    client = redis.Redis.from_url(settings.redis.url.get_secret_value())
    try:
        store = FeatureStore(client, prefix)
        store.load_scripts()
        stage = LearningStage(settings, client, has_checkpoint=False)
        report = replay_prequential(events, store, stage, batch_size=args.batch_size)
    finally:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
        client.close()

    sys.stdout.write(
        f"{dataset}: {report.events} events in {report.seconds:.1f} s, "
        f"cart horizon {settings.cart_horizon_seconds:g} s, "
        f"purchase horizon {settings.purchase_horizon_seconds:g} s, "
        f"conversion classifier {settings.conversion_learner} "
        "(CARTWHEEL_LEARNER_CONVERSION_LEARNER)\n"
    )
    sys.stdout.write("\n".join(report.lines()) + "\n")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from models.errors import CheckpointError
    from services.learner.checkpoints import restore_evaluators

    settings = load_settings(LearnerSettings)
    path = args.path or settings.checkpoint_dir / f"{settings.instance_name}.ckpt"
    unusable = _unusable_checkpoint_path(path, settings.instance_name)
    if unusable is not None:
        write_error("cartwheel", unusable)
        return _UNUSABLE_PATH_STATUS
    key = (
        settings.checkpoint_key.get_secret_value().encode()
        if settings.checkpoint_key is not None
        else None
    )
    try:
        evaluators = restore_evaluators(path, key, strict=True)
    except CheckpointError as exc:
        sys.stdout.write(f"rejected: {exc}\n")
        return _REJECTED_STATUS
    except OSError as exc:
        write_error(
            "cartwheel",
            f"checkpoint {path} cannot be read: {exc.strerror or exc}; check the "
            "path and its permissions",
        )
        return _UNUSABLE_PATH_STATUS
    if evaluators is None:
        # The file was removed between the check above and the read.
        write_error("cartwheel", f"no checkpoint at {path}")
        return _UNUSABLE_PATH_STATUS
    for name, evaluator in sorted(evaluators.items()):
        sys.stdout.write(
            f"{name}: model_version={evaluator.model.model_version} "
            f"updates={evaluator.model.n_updates}\n"
        )
    return 0


def _checkpoint_path(text: str) -> Path:
    # Path("") is the current folder, which would hide a forgotten argument.
    if not text:
        raise argparse.ArgumentTypeError(
            "the checkpoint path is empty; pass a checkpoint file, or no path "
            "for this instance's checkpoint"
        )
    return Path(text)


def _unusable_checkpoint_path(path: Path, instance_name: str) -> str | None:
    """Return why ``path`` cannot be verified at all, or None when it is a file."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return (
            f"no checkpoint at {path}; check the path (without one, the file is "
            "named by CARTWHEEL_LEARNER_CHECKPOINT_DIR and "
            "CARTWHEEL_LEARNER_INSTANCE_NAME)"
        )
    except OSError as exc:
        # For example a name too long for the file system, or a folder on
        # the way that this user cannot search.
        return (
            f"checkpoint path {path} cannot be read: {exc.strerror or exc}; "
            "check the path and its permissions"
        )
    if stat.S_ISDIR(mode):
        return (
            f"checkpoint path {path} is a directory; expected a checkpoint file "
            f"such as {path / (instance_name + '.ckpt')}"
        )
    if not stat.S_ISREG(mode):
        return f"checkpoint path {path} is not a regular file; expected a file"
    return None
