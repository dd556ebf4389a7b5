"""Run the demo: ``python -m services.demo`` is ``cartwheel demo``."""

from __future__ import annotations

import sys

from services.cli.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
