"""Run ``python -m services.replay``, the same command as ``cartwheel replay``."""

from __future__ import annotations

import argparse
import sys

from services.common.errors import CartwheelError
from services.replay.cli import register


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments of ``replay`` and run it."""
    parser = argparse.ArgumentParser(prog="python -m services.replay")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["replay", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.handler(args))
    except (CartwheelError, FileNotFoundError, ValueError) as exc:
        sys.stderr.write(f"replay failed: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
