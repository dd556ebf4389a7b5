"""The dataset argument shared by commands that read one registered dataset.

``cartwheel replay``, ``cartwheel learner evaluate`` and ``cartwheel trainer
compare`` name the dataset as their first positional argument, such as
``cartwheel trainer compare retailrocket``. The last two also accept
``--dataset NAME``, the form ``trainer compare`` took before and ``cartwheel
demo`` takes, so existing scripts keep working. A name that is not a
registered dataset with events is a usage error, as for ``replay``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from services.replay.datasets import DATASETS, replayable_names

__all__ = [
    "DEFAULT_DATASET",
    "add_dataset_argument",
    "dataset_name",
    "describe_unreplayable",
]

DEFAULT_DATASET = "rees46"


def add_dataset_argument(parser: argparse.ArgumentParser) -> None:
    """Add the optional positional ``DATASET`` and its ``--dataset`` form.

    Two different names, one in each form, are a usage error.
    """
    parser.add_argument(
        "dataset",
        nargs="?",
        metavar="DATASET",
        action=_DatasetAction,
        help=f"registered dataset name (default: {DEFAULT_DATASET}, the "
        "committed sample)",
    )
    parser.add_argument(
        "--dataset",
        dest="dataset_option",
        metavar="DATASET",
        action=_DatasetAction,
        help="the same as the positional DATASET",
    )


def describe_unreplayable(name: str) -> str | None:
    """Return why ``name`` cannot be replayed, or None for a dataset with events."""
    if name in replayable_names():
        return None
    info = DATASETS.get(name)
    if info is not None:
        return f"dataset {name!r} cannot be replayed: {info.unavailable_reason}"
    return (
        f"dataset {name!r} is not registered; expected one of "
        f"{', '.join(replayable_names())}"
    )


def dataset_name(args: argparse.Namespace) -> str:
    """Return the dataset named by either form, or the default."""
    positional: str | None = args.dataset
    option: str | None = args.dataset_option
    return positional or option or DEFAULT_DATASET


class _DatasetAction(argparse.Action):
    """Store one form of the dataset name, rejecting a second, different name.

    Each form checks the other when argparse stores it, so the check works
    whichever comes first on the command line. An absent positional is
    stored too, as None.
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        if isinstance(values, str) and (problem := describe_unreplayable(values)):
            # None as the argument: the message names the dataset itself.
            raise argparse.ArgumentError(None, problem)
        positional, option = namespace.dataset, namespace.dataset_option
        if self.dest == "dataset":
            positional = values
        else:
            option = values
        if positional is not None and option is not None and positional != option:
            # None as the argument: the message names both forms itself.
            raise argparse.ArgumentError(
                None,
                f"dataset given twice, as {positional!r} and --dataset={option!r}; "
                "give it once",
            )
        setattr(namespace, self.dest, values)
