"""The ``cartwheel`` command line.

Each area contributes its commands through a module with
``register(subparsers)``, which adds subparsers and sets ``handler`` on each
leaf: a function that takes the parsed arguments and returns the exit status.
A command that runs until it is stopped also sets ``is_service=True``, so that
a stop on SIGINT or SIGTERM exits with 0 instead of 130 or 143.
:data:`services.cli.command.AREAS` lists those modules.
"""

from __future__ import annotations

__all__: list[str] = []
