"""Descriptions of the values a setting accepts, for the tables and the error lines.

:func:`expected_form` states a field's type, range and description, as
``cartwheel config`` and docs/configuration.md show them, and
:func:`describe_failure` puts it after pydantic's message for a field that
failed validation.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

import annotated_types
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from services.common.setting_blocks import field_info

__all__ = ["describe_failure", "expected_form"]


def describe_failure(
    settings_class: type[BaseSettings], loc: tuple[int | str, ...], message: str
) -> str:
    """Return pydantic's ``message`` for the field at ``loc`` and its expected form."""
    info = field_info(settings_class, loc)
    message = message.removeprefix("Value error, ")
    if info is not None and info.annotation is bool:
        return f"{message}; expected true or false (also 1/0, yes/no or on/off)"
    form = expected_form(info) if info is not None else ""
    if message.startswith("expected") or not form:
        return message
    if message.startswith("String should match pattern"):
        # The form states in words what the regular expression checks.
        return f"expected {form}"
    if message.startswith("Input should be '"):
        # An enum or Literal field lists its values, and so does its form.
        return f"expected {form}"
    return f"{message}; expected {form}"


_NUMBER_KINDS = {int: "an integer", float: "a number"}


def expected_form(info: FieldInfo) -> str:
    """Return what a setting accepts: its type and range, then its description.

    A description that starts with "a" or "an" already names the form and is
    returned alone. The range comes from the field's ``ge``, ``gt``, ``le``
    and ``lt`` constraints.
    """
    description = info.description or ""
    if re.match(r"an? ", description):
        return description
    annotation = info.annotation
    kind = _NUMBER_KINDS.get(annotation) if isinstance(annotation, type) else None
    if kind is None:
        return description
    bounds = _range(info.metadata)
    if not bounds:
        form = kind
    elif bounds.startswith("at "):
        form = f"{kind} of {bounds}"
    else:
        form = f"{kind} {bounds}"
    return f"{form}: {description}" if description else form


def _range(constraints: Collection[Any]) -> str:
    """Return a field's numeric range in words, or "" when it has none."""
    low: tuple[str, Any] | None = None
    high: tuple[str, Any] | None = None
    for constraint in constraints:
        if isinstance(constraint, annotated_types.Ge):
            low = ("at least", constraint.ge)
        elif isinstance(constraint, annotated_types.Gt):
            low = ("above", constraint.gt)
        elif isinstance(constraint, annotated_types.Le):
            high = ("at most", constraint.le)
        elif isinstance(constraint, annotated_types.Lt):
            high = ("below", constraint.lt)
    if (
        low is not None
        and high is not None
        and (low[0], high[0])
        == (
            "at least",
            "at most",
        )
    ):
        return f"from {_number(low[1])} to {_number(high[1])}"
    return " and ".join(
        f"{word} {_number(value)}"
        for word, value in (bound for bound in (low, high) if bound is not None)
    )


def _number(value: Any) -> str:
    # Digits are grouped only from six on, so ports and small sizes read as
    # people type them (65535) and long limits stay legible (10,000,000).
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        return repr(value)
    return f"{value:,}" if abs(value) >= 100_000 else str(value)
