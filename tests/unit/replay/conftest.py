"""Fixtures for the replay tests: raw dataset files, the shared data and fakes."""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.events import Event, EventType
from services.replay.settings import DEFAULT_DATA_DIR


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, str], Path]:
    """Return a factory that writes text to a file (gzipped for a .gz name)."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".gz"):
            path.write_bytes(gzip.compress(text.encode()))
        else:
            path.write_text(text)
        return path

    return write


def _line_counts(source: Path) -> dict[str, int]:
    """Read the ``| file | bytes | md5 | lines |`` table of a dataset's SOURCE.md."""
    counts = {}
    for match in re.finditer(
        r"^\| (\S+) \| \d+ \| [0-9a-f]{32} \| (\d+) \|$", source.read_text(), re.M
    ):
        counts[match.group(1)] = int(match.group(2))
    return counts


@pytest.fixture
def shared_dataset() -> Callable[[str], tuple[Path, dict[str, int]]]:
    """Return a factory: folder name -> (folder, decompressed line count per file).

    The public datasets are not part of the repository; tests that need them
    are skipped, with the folder named, when the data folder lacks them.
    """

    def find(folder_name: str) -> tuple[Path, dict[str, int]]:
        folder = DEFAULT_DATA_DIR / folder_name
        source = folder / "SOURCE.md"
        if not source.is_file():
            pytest.skip(f"dataset folder {str(folder)!r} is not present")
        return folder, _line_counts(source)

    return find


@pytest.fixture
def make_event() -> Callable[..., Event]:
    """Return a factory of valid click events; keyword arguments override fields."""
    counter = iter(range(1, 1_000_000))

    def make(**overrides: Any) -> Event:
        number = next(counter)
        fields: dict[str, Any] = {
            "event_id": f"e{number}",
            "event_type": EventType.CLICK,
            "user_id": "u1",
            "item_id": f"i{number}",
            "event_time": datetime(2019, 10, 1, tzinfo=UTC),
        }
        fields.update(overrides)
        return Event(**fields)

    return make
