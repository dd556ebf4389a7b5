from __future__ import annotations

import importlib
from pathlib import Path

from services.cli.config import SETTINGS_CLASSES, describe_settings

CONFIGURATION_PAGE = Path(__file__).parents[3] / "docs" / "configuration.md"


def test_configuration_page_matches_settings_classes() -> None:
    page = CONFIGURATION_PAGE.read_text(encoding="utf-8")

    assert page.endswith(describe_settings()), (
        "docs/configuration.md is stale; regenerate its tables with 'cartwheel config'"
    )


def test_describe_settings_lists_nested_scorer_variable() -> None:
    text = describe_settings()

    assert "`CARTWHEEL_SCORER_RULES__MAX_PER_CATEGORY`" in text
    assert "`CARTWHEEL_KAFKA_BOOTSTRAP` | `127.0.0.1:19092`" in text


def test_describe_settings_lists_each_variable_once() -> None:
    variables = [
        line.split("`")[1]
        for line in describe_settings().splitlines()
        if line.startswith("| `")
    ]

    assert len(variables) == len(set(variables))


def test_describe_settings_states_every_expected_form() -> None:
    rows = [line for line in describe_settings().splitlines() if line.startswith("| `")]

    blank = [row.split("`")[1] for row in rows if row.endswith("|  |")]
    assert rows
    assert blank == []


def test_checkout_relative_defaults_say_so() -> None:
    # The page shows an absolute default relative to the checkout, which
    # reads as relative to the current folder unless the description states it.
    checked = []
    for _, path in SETTINGS_CLASSES:
        module_name, _, class_name = path.partition(":")
        settings_class = getattr(importlib.import_module(module_name), class_name)
        for name, info in settings_class.model_fields.items():
            if isinstance(info.default, Path) and info.default.is_absolute():
                checked.append(name)
                assert "checkout's root" in (info.description or ""), (
                    f"{class_name}.{name}"
                )

    assert checked
