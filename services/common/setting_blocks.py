"""Nested blocks of settings: the field behind a variable, and a block's JSON.

A nested block, such as the scorer's ``weights``, is set either one field at
a time (``CARTWHEEL_SCORER_WEIGHTS__CLICK``) or whole, as a JSON object in
the block's own variable (``CARTWHEEL_SCORER_WEIGHTS``). pydantic reports an
invalid field at its location either way, so :func:`json_holder` finds the
block variable whose object held it. :func:`variable_field` finds the field
that a variable sets, :func:`block_form` describes how a block is set, and
:func:`mask_block_object` hides the secrets in a block's JSON object.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from services.common.setting_names import model_classes

__all__ = [
    "block_form",
    "example_object",
    "field_info",
    "has_secret",
    "is_secret_field",
    "json_holder",
    "mask_block_object",
    "spelled",
    "variable_field",
]


def field_info(model: type[BaseModel], loc: tuple[int | str, ...]) -> FieldInfo | None:
    """Return the field that ``loc`` points at, walking into nested models."""
    info = None
    for part in loc:
        if isinstance(part, int):
            continue
        if info is not None:
            annotation = info.annotation
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                break
            model = annotation
        info = model.model_fields.get(part)
        if info is None:
            break
    return info


def spelled(variable: str, environ: Mapping[str, str]) -> str:
    """Return ``variable`` as ``environ`` spells it, or unchanged if unset.

    pydantic-settings 2.16 matches names regardless of case, so
    ``cartwheel_api_port`` sets ``CARTWHEEL_API_PORT``. Of several spellings,
    it reads the one that comes last in the environment.
    """
    spellings = [name for name in environ if name.upper() == variable]
    return spellings[-1] if spellings else variable


def variable_field(
    settings_class: type[BaseSettings], variable: str
) -> tuple[type[BaseSettings], FieldInfo] | None:
    """Return the field that ``variable`` sets, and the settings class reading it.

    The class is ``settings_class`` or a settings block in it, such as the
    Kafka block read under ``CARTWHEEL_KAFKA_``. None when no field matches.
    """
    variable = variable.upper()
    owners = sorted(
        _settings_tree(settings_class), key=lambda owner: -len(_prefix(owner))
    )
    for owner in owners:
        prefix = _prefix(owner)
        delimiter = _delimiter(owner)
        if not prefix or not variable.startswith(prefix):
            continue
        rest = variable.removeprefix(prefix).lower()
        info = field_info(owner, tuple(rest.split(delimiter) if delimiter else [rest]))
        if info is not None:
            return owner, info
    return None


def json_holder(
    settings_class: type[BaseSettings],
    names: Sequence[str],
    environ: Mapping[str, str],
) -> tuple[str, str] | None:
    """Find the block variable whose JSON object holds the field at ``names``.

    pydantic reports a field of a block given as JSON, such as
    ``CARTWHEEL_SCORER_WEIGHTS='{"ranker_blend": 5}'``, at the location of
    ``CARTWHEEL_SCORER_WEIGHTS__RANKER_BLEND``, which is not set.

    Args:
        settings_class: the class whose field failed.
        names: the field names of the error's location, outermost first.
        environ: the process environment.

    Returns:
        The block's variable as ``environ`` spells it and the key's path in
        its object, or None when the field's own variable is set or no
        block's object has the key.
    """
    if len(names) < 2:
        return None
    prefix = _prefix(settings_class)
    delimiter = _delimiter(settings_class)
    if delimiter and spelled(f"{prefix}{delimiter.join(names)}".upper(), environ) in (
        environ
    ):
        return None
    # Without a nested delimiter only the outermost block has a variable.
    sizes = range(len(names) - 1, 0, -1) if delimiter else range(1, 2)
    for size in sizes:
        holder = spelled(f"{prefix}{delimiter.join(names[:size])}".upper(), environ)
        if holder not in environ:
            continue
        try:
            value = json.loads(environ[holder])
        except ValueError:
            continue
        path = _json_path(value, names[size:])
        if path is not None:
            return holder, path
    return None


def _json_path(value: Any, names: Sequence[str]) -> str | None:
    """Return the keys that lead to ``names`` in ``value``, as spelled there.

    Keys are matched regardless of case, as pydantic-settings matches them.
    """
    keys = []
    for name in names:
        if not isinstance(value, dict):
            return None
        key = next((key for key in value if str(key).lower() == name.lower()), None)
        if key is None:
            return None
        keys.append(str(key))
        value = value[key]
    return ".".join(keys)


def block_form(owner: type[BaseSettings], variable: str, model: type[BaseModel]) -> str:
    """Describe the ways to set the block of ``variable``, for an error message.

    Args:
        owner: the settings class that reads ``variable``.
        variable: the block's variable.
        model: the block.
    """
    forms = []
    if _delimiter(owner):
        forms.append(f"{variable.upper()}{_delimiter(owner)}<NAME>")
    if issubclass(model, BaseSettings) and _prefix(model):
        forms.append(f"{_prefix(model)}<NAME>")
    expected = (
        "this variable sets a whole block of settings; expected a JSON object "
        f"such as {example_object(model)}"
    )
    if not forms:
        return expected
    return f"{expected}, or one {' or '.join(forms)} variable per setting"


def example_object(model: type[BaseModel]) -> str:
    """Return a JSON object that sets the first field with a plain default."""
    for name, info in model.model_fields.items():
        default = info.default
        if isinstance(default, bool | int | float | str):
            return json.dumps({name: default})
    return "{}"


def is_secret_field(info: FieldInfo) -> bool:
    return "SecretStr" in repr(info.annotation)


def has_secret(model: type[BaseModel]) -> bool:
    """Return whether ``model`` or a block in it has a secret field."""
    return any(
        is_secret_field(info)
        or any(has_secret(block) for block in model_classes(info.annotation))
        for info in model.model_fields.values()
    )


def mask_block_object(
    model: type[BaseModel], value: Mapping[Any, Any], mask: Callable[[str], str]
) -> dict[Any, Any]:
    """Return a block's JSON object with each value that may be a secret masked.

    Masked are the values of secret fields, whatever their JSON type, and the
    text values of keys that name no field, since such a key may be a
    misspelled secret. So is anything but an object given for a nested block
    that has a secret.

    Args:
        model: the block.
        value: the block's JSON object.
        mask: hides a secret text.
    """
    fields = {name.lower(): info for name, info in model.model_fields.items()}
    masked: dict[Any, Any] = {}
    for key, item in value.items():
        info = fields.get(str(key).lower())
        blocks = model_classes(info.annotation) if info is not None else []
        if blocks and isinstance(item, dict):
            masked[key] = mask_block_object(blocks[0], item, mask)
        elif item is None:
            masked[key] = item
        elif info is not None and is_secret_field(info):
            masked[key] = mask(item if isinstance(item, str) else json.dumps(item))
        elif blocks and has_secret(blocks[0]):
            masked[key] = mask(item if isinstance(item, str) else json.dumps(item))
        elif info is None and isinstance(item, str):
            masked[key] = mask(item)
        else:
            masked[key] = item
    return masked


def _settings_tree(settings_class: type[BaseSettings]) -> list[type[BaseSettings]]:
    """Return ``settings_class`` and the settings blocks in it, at any depth."""
    tree = [settings_class]
    for info in settings_class.model_fields.values():
        for model in model_classes(info.annotation):
            if issubclass(model, BaseSettings) and model not in tree:
                tree += [block for block in _settings_tree(model) if block not in tree]
    return tree


def _prefix(settings_class: type[BaseSettings]) -> str:
    return str(settings_class.model_config.get("env_prefix", "")).upper()


def _delimiter(settings_class: type[BaseSettings]) -> str:
    return str(settings_class.model_config.get("env_nested_delimiter") or "")
