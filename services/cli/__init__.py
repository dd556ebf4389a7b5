"""The ``cartwheel`` command line.

Each area contributes its commands through a module with
``register(subparsers)``, which adds subparsers and sets ``handler`` on each
leaf: a function that takes the parsed arguments and returns the exit status.
:data:`services.cli.__main__.AREAS` lists those modules.
"""

from __future__ import annotations

__all__: list[str] = []
