"""Repeated keys in the JSON value of a setting.

pydantic-settings 2.16 decodes the value of a block, list, set, tuple or dict
setting with ``json.loads``, which keeps the last of two equal keys in one
object. So ``CARTWHEEL_SCORER_WEIGHTS='{"click": 1, "click": 2}'`` would load
``click=2`` without a word, although other JSON readers keep the first value
or reject the text. :func:`repeated_json_keys` finds such keys, at any depth,
so that :func:`~services.common.setting_loader.load_settings` can reject them.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterator, Mapping, Sequence, Set
from typing import Any, NamedTuple, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_settings import BaseSettings

from services.common.setting_blocks import variable_field
from services.common.setting_names import model_classes

__all__ = ["RepeatedKey", "is_decoded_as_json", "repeated_json_keys"]


class RepeatedKey(NamedTuple):
    """A key given twice in one object of a variable's JSON value.

    ``key`` is the key's path through the nested objects, as the repeat
    spells it, and ``first`` the path as the first occurrence spells it. The
    two differ only in case when the keys name a block's field regardless of
    case, as in ``{"click": 1, "CLICK": 2}``.
    """

    variable: str
    key: str
    first: str


class _Pairs(list[tuple[str, Any]]):
    """The key-value pairs of one JSON object, in order, repeats included."""


def repeated_json_keys(
    settings_class: type[BaseSettings], environ: Mapping[str, str]
) -> list[RepeatedKey]:
    """Return the keys repeated within one object of a setting's JSON value.

    Only variables whose setting pydantic-settings decodes as JSON are read.
    In an object that sets a block's fields, keys that differ only in case
    count as repeated unless the settings class is case-sensitive, because
    pydantic-settings then matches them to the same field. Keys of other
    objects, such as a dict setting's, are compared exactly.

    Returns:
        Each repeated key once per object, in variable order, then in the
        order the value lists them. A value that is not valid JSON is left to
        the validation errors.
    """
    found = []
    for variable in sorted(environ):
        located = variable_field(settings_class, variable)
        if located is None:
            continue
        owner, info = located
        if not is_decoded_as_json(info.annotation):
            continue
        try:
            value = json.loads(environ[variable], object_pairs_hook=_Pairs)
        except (ValueError, RecursionError):
            continue
        models = model_classes(info.annotation)
        is_case_sensitive = bool(owner.model_config.get("case_sensitive", False))
        found += [
            RepeatedKey(variable, key, first)
            for key, first in _repeats(
                value, models[0] if models else None, (), not is_case_sensitive
            )
        ]
    return found


def _repeats(
    value: Any,
    model: type[BaseModel] | None,
    path: tuple[str, ...],
    is_folding_case: bool,
) -> Iterator[tuple[str, str]]:
    """Yield the path of each repeated key in ``value`` and of its first spelling.

    ``model`` is the block that an object in ``value`` sets, or None when its
    keys are data rather than field names.
    """
    if isinstance(value, list) and not isinstance(value, _Pairs):
        for item in value:
            yield from _repeats(item, None, path, is_folding_case)
        return
    if not isinstance(value, _Pairs):
        return
    is_folding = is_folding_case and model is not None
    fields = {}
    if model is not None:
        fields = {
            name.lower() if is_folding else name: info
            for name, info in model.model_fields.items()
        }
    first_spellings: dict[str, str] = {}
    reported: set[str] = set()
    for key, item in value:
        name = key.lower() if is_folding else key
        if name not in first_spellings:
            first_spellings[name] = key
        elif name not in reported:
            reported.add(name)
            first = first_spellings[name]
            yield ".".join((*path, key)), ".".join((*path, first))
        info = fields.get(name)
        blocks = model_classes(info.annotation) if info is not None else []
        yield from _repeats(
            item, blocks[0] if blocks else None, (*path, key), is_folding_case
        )


def is_decoded_as_json(annotation: Any) -> bool:
    """Return whether pydantic-settings decodes a variable of this type as JSON."""
    if get_origin(annotation) in (Union, types.UnionType):
        return any(is_decoded_as_json(argument) for argument in get_args(annotation))
    if model_classes(annotation):
        return True
    kind = get_origin(annotation) or annotation
    return (
        isinstance(kind, type)
        and issubclass(kind, (Mapping, Sequence, Set))
        and not issubclass(kind, (str, bytes))
    )
