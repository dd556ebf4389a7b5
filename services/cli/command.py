"""Build the ``cartwheel`` parser and run the command it selects.

:mod:`services.cli.__main__` imports this module only once SIGINT and SIGTERM
are handled, and describes the exit statuses.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import select
import signal
import sys
from collections.abc import Sequence

from services.common.entrypoint import (
    ENVIRONMENT_ERRORS,
    report_environment_error,
    write_error,
)
from services.common.errors import CartwheelError
from services.common.logging import configure_logging

__all__ = ["AREAS", "build_parser", "run"]

logger = logging.getLogger(__name__)

_PROGRAM = "cartwheel"

# Modules with a register(subparsers) function; adding an area is one line.
AREAS: tuple[str, ...] = (
    "services.infra.cli",
    "services.replay.cli",
    "services.features.cli",
    "services.hotpath.cli",
    "services.learner.cli",
    "services.trainer.cli",
    "services.api.cli",
    "services.feedback.cli",
    "services.evaluation.cli",
    "services.demo.cli",
    "services.bench.cli",
    "services.cli.config",
)

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# The status a shell reports for a process that SIGPIPE ended (128 + 13), as
# for `yes` in `yes | head`. Python ignores SIGPIPE, so the command returns
# it itself: scripts and `set -o pipefail` then see what other tools give,
# and it differs from 1, which here means invalid input or a failed check.
_CLOSED_STDOUT_STATUS = 128 + signal.SIGPIPE


def build_parser(areas: Sequence[str] = AREAS) -> argparse.ArgumentParser:
    """Build the ``cartwheel`` parser with the commands of every area module."""
    parser = argparse.ArgumentParser(
        prog="cartwheel",
        description="Streaming real-time recommender for online shops.",
    )
    parser.add_argument(
        "--log-level",
        default=None,
        type=str.upper,
        choices=_LOG_LEVELS,
        help="lowest level of log lines written to stderr; for a service "
        "command it replaces the service's *_LOG_LEVEL setting (default: "
        "WARNING, or that setting for a service command)",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in areas:
        importlib.import_module(module_name).register(subparsers)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Run one ``cartwheel`` command and return its exit status.

    Raises:
        KeyboardInterrupt: SIGINT, or SIGTERM as
            :class:`~services.common.interrupts.Terminated`, stopped a command
            other than a service, or arrived before the command started.
            :func:`services.cli.__main__.main` turns SIGTERM into this
            exception and reports both.
    """
    # Importing every command's module takes a second or more.
    args = _parse_arguments(build_parser(), argv)
    configure_logging(args.log_level or "WARNING")
    try:
        status: int = args.handler(args)
        # Flushed here rather than at exit, so that a reader of stdout that
        # has gone is handled below instead of in an "Exception ignored" line.
        sys.stdout.flush()
    except ENVIRONMENT_ERRORS as exc:
        return report_environment_error(_PROGRAM, exc)
    except (CartwheelError, OSError, ValueError) as exc:
        if isinstance(exc, BrokenPipeError) and _is_stdout_closed():
            _discard_stdout()
            return _CLOSED_STDOUT_STATUS
        # Invalid input, such as a missing file or a bad option value: the
        # message names what to fix, so no traceback.
        write_error(_PROGRAM, str(exc))
        return 1
    except KeyboardInterrupt:
        if getattr(args, "is_service", False):
            # A service ends on a signal by design, also on one that arrives
            # before it has installed its own handlers.
            return 0
        raise
    return status


def _parse_arguments(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    """Parse ``argv``, reporting an unknown argument with its command's usage."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # parse_args would report these with the top-level usage line, which
        # hides the options of the command that was meant.
        _command_parser(parser, args).error(
            f"unrecognized arguments: {' '.join(unknown)}"
        )
    return args


def _command_parser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    """Return the parser of the innermost command that ``args`` selected."""
    while True:
        commands = [
            action
            for action in parser._actions
            if isinstance(action, argparse._SubParsersAction)
        ]
        name = getattr(args, commands[0].dest, None) if commands else None
        if name is None or name not in commands[0].choices:
            return parser
        parser = commands[0].choices[name]


def _is_stdout_closed() -> bool:
    """Return True when nothing reads stdout any more, as after ``| head``.

    A pipe or socket whose reader has closed polls as an error or a hang-up.
    A broken pipe raised while stdout still has a reader came from another
    connection, such as one to a server, and is reported like any error.
    """
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    poller = select.poll()
    poller.register(descriptor, select.POLLOUT)
    closed = select.POLLERR | select.POLLHUP
    return any(events & closed for _, events in poller.poll(0))


def _discard_stdout() -> None:
    """Send the rest of stdout to the null device.

    Python flushes stdout once more at exit, which would raise the same
    error again, now outside any handler.
    """
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, sys.stdout.fileno())
    os.close(null)
