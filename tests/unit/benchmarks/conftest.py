"""Load the scripts of benchmarks/ as modules, so that tests can call them."""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.unit.benchmarks.sample import SampleLoadedError

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


@pytest.fixture
def load_script_until_sample(
    load_script: Callable[[str], ModuleType], monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], ModuleType]:
    """Return a loader of scripts that raise SampleLoadedError to load a sample."""

    def load(name: str) -> ModuleType:
        module = load_script(name)

        def load_sample(*args: Any) -> Any:
            raise SampleLoadedError(name)

        monkeypatch.setattr(module, "load_sample", load_sample)
        return module

    return load


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Undo the logging set-up of a script's main, which writes to this stderr."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
