"""Entry point of the ``cartwheel`` command.

Exit status: what the command returns, 0 on success. A usage error, such as
an unknown option, an option value of the wrong form, a dataset name that is
not a registered dataset with events or two arguments that exclude each
other, exits with 2 after the usage line. Invalid settings, an unreachable
broker or another infrastructure failure exit with 2; other invalid input,
such as a missing file, exits with 1.
Each of these prints one line without a traceback. ``learner
verify-checkpoint`` differs, as its help describes: it exits with 1 for a
checkpoint that fails the check and with 2 when it has no file to check.
When the reader of stdout goes away early, as ``head`` does, the command
stops without a word and exits with 141.

Ctrl-C (SIGINT) and SIGTERM stop every command, which first stops what it
started. A service runs until it is stopped: ``api serve`` and the ``run``
command of ``catalog``, ``hotpath``, ``trainer`` and ``feedback``. A signal
is its normal end, so it then exits with 0. Compose, Kubernetes and systemd
stop services with SIGTERM, and systemd counts any other status as a failure
unless the unit lists it in SuccessExitStatus. Any other command is cut
short, so it exits with 130 after Ctrl-C and 143 after SIGTERM. So does a
command of either kind stopped while ``cartwheel`` loads its commands, in
about its first second, before it has parsed the command line.

This module imports only the standard library before it turns both signals
into exceptions, so that neither is lost or kills the process while the
commands load, even when the shell started it with SIGINT ignored. A second
signal during the stop is ignored, so the exit status stays the one above.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence

from services.common.interrupts import (
    Terminated,
    honour_interrupts,
    stop_signals_as_interrupts,
)

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``cartwheel`` command and return its exit status.

    After a SIGINT or SIGTERM, both signals stay ignored on return, because
    the process is then exiting. Otherwise the previous handlers come back.
    """
    # LIMITATION(L-92): a SIGINT that comes while the interpreter starts, before
    # this line, is lost when the process started with SIGINT ignored.
    honour_interrupts()
    try:
        with stop_signals_as_interrupts():
            # Imported once both signals are handled: it loads the Redis,
            # Kafka and pydantic libraries, which take half a second or more.
            from services.cli.command import run

            return run(argv)
    except KeyboardInterrupt as stop:
        return _report_stop(stop)


def _report_stop(stop: KeyboardInterrupt) -> int:
    """Write why the command stopped and return the status a shell would give.

    A shell reports 128 plus the number of the signal that ended a process.
    """
    if isinstance(stop, Terminated):
        sys.stderr.write("cartwheel: terminated\n")
        return 128 + signal.SIGTERM
    sys.stderr.write("cartwheel: interrupted\n")
    return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
