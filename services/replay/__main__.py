"""Run ``python -m services.replay``, the same command as ``cartwheel replay``.

Exit status: 0 on success, 2 after a usage error (such as an unknown dataset,
a --limit below 1 or a dataset given with --file), invalid settings, an
unreachable broker or a missing topic, and 1 after other invalid input such
as missing dataset files, a ``--file`` that is not UTF-8 JSON-lines text, or
a ``--file`` in which no line is a valid event (after the summary). Each
error is one line on stderr without a traceback.
"""

from __future__ import annotations

import sys

from services.common.entrypoint import (
    ENVIRONMENT_ERRORS,
    report_environment_error,
    write_error,
)
from services.common.errors import CartwheelError
from services.replay.cli import build_parser

_PROGRAM = "services.replay"


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments of ``replay``, run it and return the exit status."""
    parser = build_parser("python -m services.replay")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.handler(args))
    except ENVIRONMENT_ERRORS as exc:
        return report_environment_error(_PROGRAM, exc)
    except (CartwheelError, FileNotFoundError, ValueError) as exc:
        write_error(_PROGRAM, str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
