"""Run the feedback worker: ``python -m services.feedback``.

SIGTERM or SIGINT at any moment after the interpreter has started stops the
worker cleanly, with status 0: a signal that arrives while the modules load
is remembered and stops the start-up as soon as they are loaded.
"""

from __future__ import annotations

import sys

from services.feedback.early_signals import EarlySignals


def _launch() -> int:
    early = EarlySignals()
    early.install()
    # Imported here, after the handler, because loading them takes the
    # first half second of the process.
    from services.common.entrypoint import parse_service_arguments, run_entry_point
    from services.feedback.service import main

    parse_service_arguments("services.feedback", __doc__)
    return run_entry_point("services.feedback", lambda: main(lambda: early.received))


if __name__ == "__main__":
    sys.exit(_launch())
