"""The ``cartwheel config`` command: every setting, its variable and default."""

from __future__ import annotations

import argparse
import enum
import importlib
import json
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from services.common.settings import expected_form

__all__ = ["SETTINGS_CLASSES", "describe_settings", "register"]

# (title, "module:class") of every settings class, in the order a reader meets them.
SETTINGS_CLASSES: tuple[tuple[str, str], ...] = (
    ("Kafka connection", "services.common.settings:KafkaSettings"),
    ("Redis connection", "services.common.settings:RedisSettings"),
    ("Topics", "services.common.topic_settings:TopicSettings"),
    ("Local infrastructure", "services.infra.settings:InfraSettings"),
    ("Replay", "services.replay.settings:Settings"),
    ("Catalog consumer", "services.features.settings:CatalogSettings"),
    ("Hot path", "services.hotpath.settings:HotPathSettings"),
    ("Online learning", "services.learner.settings:LearnerSettings"),
    ("Scoring", "services.scorer.settings:ScorerSettings"),
    ("Trainer", "services.trainer.settings:TrainerSettings"),
    ("HTTP API", "services.api.settings:ApiSettings"),
    ("Feedback", "services.feedback.settings:FeedbackSettings"),
    ("Evaluation", "services.evaluation.settings:EvaluationSettings"),
    ("Evaluation baselines", "services.evaluation.settings:BaselineSettings"),
    ("Demo", "services.demo.settings:DemoSettings"),
)

_SHARED_BLOCKS = ("KafkaSettings", "RedisSettings", "TopicSettings")

_REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``cartwheel config``."""
    parser = subparsers.add_parser(
        "config",
        help="list every setting with its environment variable and default",
        description="Print each environment variable Cartwheel reads, its "
        "default and its expected form, as a Markdown table per service.",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    sys.stdout.write(describe_settings())
    return 0


def describe_settings() -> str:
    """Return the Markdown reference of every setting."""
    titles = {path.partition(":")[2]: title for title, path in SETTINGS_CLASSES}
    sections = []
    for title, path in SETTINGS_CLASSES:
        module_name, _, class_name = path.partition(":")
        settings_class = getattr(importlib.import_module(module_name), class_name)
        rows = [
            f"| `{variable}` | {default} | {description} |"
            for variable, default, description in _rows(settings_class, "", titles)
        ]
        # Settings with a section of their own are listed once, there.
        shared = [
            f"[{titles[name]}](#{_anchor(titles[name])})"
            for name in _nested_settings(settings_class)
            if name in titles
        ]
        also = (
            f"\nIt also reads the variables of {', '.join(shared)}.\n" if shared else ""
        )
        sections.append(
            f"## {title}\n\n| variable | default | expected |\n|---|---|---|\n"
            + "\n".join(rows)
            + "\n"
            + also
        )
    return "\n".join(sections)


def _anchor(title: str) -> str:
    return title.lower().replace(" ", "-")


def _nested_settings(settings_class: type[BaseModel]) -> list[str]:
    """Return the class names of the settings classes nested in this one."""
    return [
        info.annotation.__name__
        for info in settings_class.model_fields.values()
        if isinstance(info.annotation, type)
        and issubclass(info.annotation, BaseSettings)
        and info.annotation.__name__ not in _SHARED_BLOCKS
    ]


def _rows(
    settings_class: type[BaseModel], prefix: str, sections: Mapping[str, str]
) -> Iterator[tuple[str, str, str]]:
    config = settings_class.model_config
    prefix = prefix or str(config.get("env_prefix", ""))
    delimiter = str(config.get("env_nested_delimiter") or "_")
    for name, info in settings_class.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
            is_listed = annotation.__name__ in sections
            if annotation.__name__ not in _SHARED_BLOCKS and not is_listed:
                yield from _rows(annotation, "", sections)
            continue
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _rows(annotation, f"{prefix}{name.upper()}{delimiter}", sections)
            continue
        yield f"{prefix}{name.upper()}", _default(info), _describe(info)


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    else:
        value = info.default
    if isinstance(value, SecretStr):
        # Show a default only when it carries no credentials.
        secret = value.get_secret_value()
        return "(secret)" if "@" in secret else f"`{secret}`"
    if value is None:
        return "unset"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    return f"`{json.dumps(_plain(value))}`"


def _plain(value: Any) -> Any:
    """Turn a default into JSON that reads the same on every machine."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(_plain(member) for member in value)
    if isinstance(value, list | tuple):
        return [_plain(member) for member in value]
    if isinstance(value, Path):
        # Defaults derived from the checkout's location are shown relative to it.
        if value.is_absolute():
            return os.path.relpath(value, _REPOSITORY_ROOT)
        return str(value)
    return value


def _describe(info: FieldInfo) -> str:
    return expected_form(info).replace("|", "\\|")
