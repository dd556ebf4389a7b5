"""Entry point of the ``cartwheel`` command.

Exit status: what the command returns, 0 on success. A usage error, such as
an unknown option, an option value of the wrong form or two arguments that
exclude each other, exits with 2 after the usage line. Invalid settings, an
unreachable broker or another infrastructure failure exit with 2; other
invalid input, such as an unknown dataset or a missing file, exits with 1.
Each of these prints one line without a traceback. ``learner
verify-checkpoint`` differs, as its help describes: it exits with 1 for a
checkpoint that fails the check and with 2 when it has no file to check.
Ctrl-C exits with 130 and SIGTERM with 143, both after the command has
stopped what it started. When the reader of stdout goes away early, as
``head`` does, the command stops without a word and exits with 141.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import select
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from services.common.entrypoint import (
    ENVIRONMENT_ERRORS,
    honour_interrupts,
    report_environment_error,
    write_error,
)
from services.common.errors import CartwheelError
from services.common.logging import configure_logging

__all__ = ["AREAS", "Terminated", "build_parser", "main"]

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


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM.

    It derives from KeyboardInterrupt, so a command cleans up after SIGTERM
    exactly as after Ctrl-C.
    """


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while a command runs.

    Only the main thread can set signal handlers; elsewhere nothing changes.
    Services that stop gracefully install their own handler while they run.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``cartwheel`` command and return its exit status."""
    honour_interrupts()
    try:
        # Importing every command's module takes a second or more.
        parser = build_parser()
    except KeyboardInterrupt:
        sys.stderr.write("cartwheel: interrupted\n")
        return 130
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # parse_args would report these with the top-level usage line, which
        # hides the options of the command that was meant.
        _command_parser(parser, args).error(
            f"unrecognized arguments: {' '.join(unknown)}"
        )
    configure_logging(args.log_level or "WARNING")
    try:
        with _sigterm_as_interrupt():
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
        # Invalid input, such as an unknown dataset, a missing file or a bad
        # option value: the message names what to fix, so no traceback.
        write_error(_PROGRAM, str(exc))
        return 1
    except Terminated:
        sys.stderr.write("cartwheel: terminated\n")
        return 143
    except KeyboardInterrupt:
        sys.stderr.write("cartwheel: interrupted\n")
        return 130
    return status


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


if __name__ == "__main__":
    sys.exit(main())
