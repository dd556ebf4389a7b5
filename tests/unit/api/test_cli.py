"""``cartwheel api serve``: settings and logging before the server starts."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator

import pytest

from services.api import cli, server
from services.api.settings import ApiSettings


@pytest.fixture(autouse=True)
def _restore_root_level() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)


def _serve_args(log_level: str | None) -> argparse.Namespace:
    return argparse.Namespace(host=None, port=None, log_level=log_level)


@pytest.mark.parametrize(
    ("variable", "option", "expected"),
    [
        (None, None, logging.INFO),
        ("WARNING", None, logging.WARNING),
        ("WARNING", "DEBUG", logging.DEBUG),
    ],
    ids=["default", "variable", "option"],
)
def test_serve_log_level(
    monkeypatch: pytest.MonkeyPatch,
    variable: str | None,
    option: str | None,
    expected: int,
) -> None:
    if variable is None:
        monkeypatch.delenv("CARTWHEEL_API_LOG_LEVEL", raising=False)
    else:
        monkeypatch.setenv("CARTWHEEL_API_LOG_LEVEL", variable)
    served: list[ApiSettings] = []
    monkeypatch.setattr(server, "serve", served.append)

    status = cli._serve(_serve_args(option))

    assert status == 0
    assert len(served) == 1
    assert logging.getLogger().getEffectiveLevel() == expected
