"""Run a service module as ``python -m``, in a child process, as it is deployed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["REPOSITORY", "environment_without_settings", "run_module"]

REPOSITORY = Path(__file__).resolve().parents[1]


def environment_without_settings() -> dict[str, str]:
    """Return this process's environment without any ``CARTWHEEL_`` variable."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("CARTWHEEL_")
    }


def run_module(
    module: str, environment: dict[str, str], *arguments: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module arguments`` from the repository root, capturing output."""
    return subprocess.run(
        [sys.executable, "-m", module, *arguments],
        env=environment,
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
