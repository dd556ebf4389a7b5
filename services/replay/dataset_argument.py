"""The dataset argument shared by commands that read one registered dataset.

``cartwheel replay``, ``cartwheel learner evaluate`` and ``cartwheel trainer
compare`` name the dataset as their first positional argument, such as
``cartwheel trainer compare retailrocket``. The last two also accept
``--dataset NAME``, the form ``trainer compare`` took before and ``cartwheel
demo`` takes, so existing scripts keep working.
"""

from __future__ import annotations

import argparse

__all__ = ["DEFAULT_DATASET", "add_dataset_argument", "dataset_name"]

DEFAULT_DATASET = "rees46"


def add_dataset_argument(parser: argparse.ArgumentParser) -> None:
    """Add the optional positional ``DATASET`` and its ``--dataset`` form."""
    parser.add_argument(
        "dataset",
        nargs="?",
        metavar="DATASET",
        help=f"registered dataset name (default: {DEFAULT_DATASET}, the "
        "committed sample)",
    )
    parser.add_argument(
        "--dataset",
        dest="dataset_option",
        metavar="DATASET",
        help="the same as the positional DATASET",
    )


def dataset_name(args: argparse.Namespace) -> str:
    """Return the dataset named by either form, or the default.

    Raises:
        ValueError: the two forms name different datasets.
    """
    positional: str | None = args.dataset
    option: str | None = args.dataset_option
    if positional is not None and option is not None and positional != option:
        raise ValueError(
            f"dataset given twice, as {positional!r} and --dataset={option!r}; "
            "give it once"
        )
    return positional or option or DEFAULT_DATASET
