"""Load the scripts of benchmarks/ as modules, so that tests can call them."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).parents[3] / "benchmarks"


@pytest.fixture(scope="session")
def load_script() -> Callable[[str], ModuleType]:
    """Return a loader that imports ``benchmarks/<name>.py`` once per session."""

    def load(name: str) -> ModuleType:
        module_name = f"benchmarks_{name}"
        if module_name in sys.modules:
            return sys.modules[module_name]
        spec = importlib.util.spec_from_file_location(
            module_name, BENCHMARKS / f"{name}.py"
        )
        if spec is None or spec.loader is None:
            raise ImportError(f"benchmarks/{name}.py cannot be loaded")
        module = importlib.util.module_from_spec(spec)
        # dataclasses look the module up while the script runs.
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        return module

    return load
