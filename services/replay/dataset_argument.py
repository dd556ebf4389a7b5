"""The dataset argument shared by commands that read one registered dataset.

``cartwheel replay``, ``cartwheel learner evaluate`` and ``cartwheel trainer
compare`` name the dataset as their first positional argument, such as
``cartwheel trainer compare retailrocket``. The last two also accept
``--dataset NAME``, the form ``trainer compare`` took before and ``cartwheel
demo`` takes, so existing scripts keep working.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

__all__ = ["DEFAULT_DATASET", "add_dataset_argument", "dataset_name"]

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
