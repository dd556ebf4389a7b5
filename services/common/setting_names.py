"""Warn about environment variables that look like settings but match none.

pydantic-settings ignores a variable that names no field, so a misspelled
setting would silently keep its default. :func:`warn_unknown_variables`
checks the variables under the prefixes of the settings class being loaded
and of the blocks nested in it. It skips those under a longer prefix of
another settings class, so the variables of other services, which the demo
and shared environment files export, are not reported. It also skips a name
that goes on past a single-value field and the nested delimiter, such as
``CARTWHEEL_SCORER_CANDIDATES__TRENDING__WEIGHT``, while the field's own
variable is unset. pydantic-settings then reads the name into the field as a
block, which the field rejects, so the error names the variable instead, with
the closest valid name that :func:`variables_under_value` finds.

A name that spells a setting of the same level in the wrong place, such as
``CARTWHEEL_SCORER_TRENDING_WEIGHT`` for
``CARTWHEEL_SCORER_CANDIDATES__TRENDING_WEIGHT``, is not merely misspelled:
it certainly meant that setting, so :func:`misplaced_variables` returns it
and the loader stops the process instead of warning. It also stops for a
name inside a nested block of the class that names no field of the block,
such as ``CARTWHEEL_SCORER_WEIGHTS__RANKER_BLND``, because the name was
meant for that block (:func:`unknown_block_fields`). Other unknown names
only warn, because an environment shared by several services, or written
for another version of Cartwheel, may hold names that this version lacks.
:func:`unknown_json_keys` finds the keys of a block given whole as a JSON
object that name no field, which pydantic would drop without a word.
:func:`warn_repeated_variables` warns about a setting set under two
spellings, such as ``CARTWHEEL_API_PORT`` and ``cartwheel_api_port``,
because pydantic-settings matches names regardless of case.
"""

from __future__ import annotations

import difflib
import json
import logging
import types
from collections.abc import Collection, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_settings import BaseSettings

__all__ = [
    "KnownVariables",
    "UnknownKey",
    "UnknownVariable",
    "known_variables",
    "misplaced_variables",
    "model_classes",
    "repeated_variables",
    "unknown_block_fields",
    "unknown_json_keys",
    "unknown_variables",
    "variables_under_value",
    "warn_repeated_variables",
    "warn_unknown_variables",
]

logger = logging.getLogger(__name__)

# Variables already reported in this process, so each is reported once even
# when a command loads its settings more than once.
_reported: set[str] = set()


@dataclass
class KnownVariables:
    """The variables that a settings class and its nested blocks read.

    ``open_stems`` maps the name stems followed by free keys (a dict field
    read through a nested delimiter) to the dict's own variable, and any name
    that starts with one counts. ``block_stems`` maps the stem of each nested
    model's fields, such as ``CARTWHEEL_SCORER_CANDIDATES__``, to the variable
    of the whole block. ``block_parents`` maps the same stems to the prefix or
    stem that the block's variable is a field of, such as
    ``CARTWHEEL_SCORER_``. ``value_stems`` maps the stem that a field with a
    single value would have, such as ``CARTWHEEL_SCORER_CANDIDATES__TRENDING__``,
    to the field's variable. It covers every such field of a block, and the
    list, set and tuple fields of a class with a nested delimiter.
    ``block_models`` maps the variable of each field that holds a model,
    which takes the whole block as a JSON object, to that model.
    """

    prefixes: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    open_stems: dict[str, str] = field(default_factory=dict)
    block_stems: dict[str, str] = field(default_factory=dict)
    block_parents: dict[str, str] = field(default_factory=dict)
    value_stems: dict[str, str] = field(default_factory=dict)
    block_models: dict[str, type[BaseModel]] = field(default_factory=dict)

    def is_known(self, name: str) -> bool:
        return name in self.names or any(
            name.startswith(stem) for stem in self.open_stems
        )

    def value_field(self, name: str) -> str | None:
        """Return the variable of the single-value field that ``name`` extends."""
        stems = [stem for stem in self.value_stems if name.startswith(stem)]
        return self.value_stems[max(stems, key=len)] if stems else None


def known_variables(settings_class: type[BaseSettings]) -> KnownVariables:
    """Return the prefixes and variable names that ``settings_class`` reads."""
    known = KnownVariables()
    _add_block(settings_class, known, set())
    # Another class with the same prefix reads its own fields from it (the
    # hot path reads CARTWHEEL_HOTPATH_STAGES alone, for example).
    for other in _settings_classes():
        if _prefix(other) in known.prefixes:
            _add_block(other, known, set())
    return known


class UnknownVariable(NamedTuple):
    """A variable under a settings prefix that names no setting.

    ``closest`` is the most similar known name, or None when none is close.
    ``block`` is the variable of the nested block whose field the name
    spells, such as ``CARTWHEEL_SCORER_CANDIDATES``, or None.
    ``is_outside_block`` is true when ``closest`` is not a field of that
    block but of a block beside it or of the level that holds it.
    ``is_misplaced`` is true when the name spells exactly that field, only
    in the wrong place, so ``closest`` is certainly the setting it meant.
    """

    variable: str
    closest: str | None
    block: str | None
    is_outside_block: bool = False
    is_misplaced: bool = False


def unknown_variables(
    settings_class: type[BaseSettings], environ: Mapping[str, str]
) -> list[UnknownVariable]:
    """Return each unknown variable under the class's prefixes, in name order.

    Args:
        settings_class: the class being loaded.
        environ: the process environment.
    """
    known = known_variables(settings_class)
    foreign = {_prefix(other) for other in _settings_classes()} - known.prefixes
    names = {variable.upper() for variable in environ}
    unknown = []
    for variable in sorted(environ):
        name = variable.upper()
        owner = max(
            (prefix for prefix in known.prefixes if name.startswith(prefix)),
            key=len,
            default=None,
        )
        if owner is None or known.is_known(name):
            continue
        if any(len(other) > len(owner) and name.startswith(other) for other in foreign):
            continue
        value_field = known.value_field(name)
        if value_field is not None and value_field not in names:
            # pydantic-settings 2.16 reads the name into the field as a block,
            # unless the field's own variable is set, and the error that
            # follows names it (variables_under_value).
            continue
        unknown.append(_describe_unknown(variable, name, known))
    return unknown


def misplaced_variables(
    settings_class: type[BaseSettings], environ: Mapping[str, str]
) -> list[UnknownVariable]:
    """Return the unknown variables that spell a setting in the wrong place.

    Such a name, like ``CARTWHEEL_SCORER_TRENDING_WEIGHT`` for
    ``CARTWHEEL_SCORER_CANDIDATES__TRENDING_WEIGHT``, spells exactly a field
    of a block beside its own, of the level holding its block, or of a block
    on its own level, so the setting it meant is certain. Fields of a block
    that is a settings class of its own, such as the Kafka block, are left
    out: that block is also read under its own prefix, and the loading code
    may replace it, so the setting meant is not certain.

    Args:
        settings_class: the class being loaded.
        environ: the process environment.

    Returns:
        The variables in name order, each with the variable it meant as
        ``closest``.
    """
    return [
        part for part in unknown_variables(settings_class, environ) if part.is_misplaced
    ]


def unknown_block_fields(
    settings_class: type[BaseSettings], environ: Mapping[str, str]
) -> list[UnknownVariable]:
    """Return the unknown variables inside a nested block, at any depth.

    Such a name, like ``CARTWHEEL_SCORER_WEIGHTS__RANKER_BLND``, goes on past
    a block's variable and the nested delimiter, so it was meant for that
    block. A name that spells a field of another place exactly is left to
    :func:`misplaced_variables`. Each variable comes with its innermost block
    and the closest valid name, or None when none is close, in name order.
    """
    return [
        part
        for part in unknown_variables(settings_class, environ)
        if part.block is not None and not part.is_misplaced
    ]


class UnknownKey(NamedTuple):
    """A key of a block given whole as a JSON object that names no field of it.

    ``key`` is the key's path in the object, its parts joined with ``.``, as
    the variable spells it. ``closest`` is the field name most similar to the
    key's last part, or None when none is close.
    """

    variable: str
    key: str
    closest: str | None


def unknown_json_keys(
    settings_class: type[BaseSettings], environ: Mapping[str, str]
) -> list[UnknownKey]:
    """Return the keys that name no field in blocks given as JSON objects.

    pydantic-settings reads a variable such as ``CARTWHEEL_SCORER_WEIGHTS``
    as JSON into the whole block, and pydantic drops a key that names no
    field, so ``{"ranker_blnd": 0.5}`` would keep the default without a word.
    Keys are matched regardless of case, as pydantic-settings matches them,
    and the objects of nested blocks are checked too.

    Args:
        settings_class: the class being loaded.
        environ: the process environment.

    Returns:
        The keys in variable order, then in the order the object lists them.
        A value that is not a JSON object is left to the validation errors.
    """
    known = known_variables(settings_class)
    found = []
    for variable in sorted(environ):
        model = known.block_models.get(variable.upper())
        if model is None:
            continue
        try:
            value = json.loads(environ[variable])
        except ValueError:
            continue
        if isinstance(value, dict):
            found += [
                UnknownKey(variable, key, closest)
                for key, closest in _unknown_keys(model, value, ())
            ]
    return found


def _unknown_keys(
    model: type[BaseModel], value: Mapping[Any, Any], path: tuple[str, ...]
) -> Iterator[tuple[str, str | None]]:
    """Yield the path and closest field of each key that ``model`` lacks."""
    fields = {name.lower(): info for name, info in model.model_fields.items()}
    for key, item in value.items():
        info = fields.get(str(key).lower())
        if info is None:
            yield ".".join((*path, str(key))), _closest(str(key).lower(), fields)
            continue
        models = model_classes(info.annotation)
        if models and isinstance(item, dict):
            yield from _unknown_keys(models[0], item, (*path, str(key)))


def variables_under_value(
    settings_class: type[BaseSettings], variable: str, environ: Mapping[str, str]
) -> list[UnknownVariable]:
    """Return the variables that extend a single-value field past its name.

    pydantic-settings reads ``CARTWHEEL_SCORER_CANDIDATES__TRENDING__WEIGHT=1``
    into the field ``CARTWHEEL_SCORER_CANDIDATES__TRENDING`` as the block
    ``{'weight': '1'}``, which that field rejects. Each variable comes with the
    valid name closest to it, such as
    ``CARTWHEEL_SCORER_CANDIDATES__TRENDING_WEIGHT``.

    Args:
        settings_class: the class being loaded.
        variable: the single-value field's variable, in any case.
        environ: the process environment.

    Returns:
        The variables in name order. The list is empty when pydantic-settings
        reads no names past ``variable``.
    """
    known = known_variables(settings_class)
    stems = [
        stem
        for stem, field_variable in known.value_stems.items()
        if field_variable == variable.upper()
    ]
    return [
        _describe_unknown(name, name.upper(), known)
        for name in sorted(environ)
        if any(name.upper().startswith(stem) for stem in stems)
    ]


def _describe_unknown(
    variable: str, name: str, known: KnownVariables
) -> UnknownVariable:
    """Find the closest known name, looking first near a nested block's fields.

    A misspelled field of a nested block is compared with that block's
    fields, so the block's own variable, which takes the whole block as JSON,
    is never suggested for it. When none of them is close, the name may be a
    field put in the wrong block, so it is compared with the fields of the
    blocks beside it and of the level that holds them. A name that spells
    one of those fields exactly is misplaced, whatever else is close.
    """
    stem = _home(name, known)
    misplaced = _misplaced(name, stem, known)
    block = known.block_stems[stem] if stem is not None else None
    if misplaced is not None:
        return UnknownVariable(variable, misplaced, block, block is not None, True)
    if stem is None:
        return UnknownVariable(variable, _closest(name, known.names), None)
    field_name = name.removeprefix(stem)
    fields = {
        other.removeprefix(stem) for other in known.names if other.startswith(stem)
    }
    closest = _closest(field_name, fields)
    if closest is not None:
        return UnknownVariable(variable, f"{stem}{closest}", block)

    neighbours = _neighbour_fields(stem, known)
    closest = _closest(field_name, neighbours)
    if closest is not None:
        return UnknownVariable(variable, neighbours[closest], block, True)
    return UnknownVariable(variable, None, block)


def _neighbour_fields(stem: str, known: KnownVariables) -> dict[str, str]:
    """Map the fields beside the block at ``stem`` to their variables.

    These are the fields of the level that holds the block (the settings
    class, or the enclosing block) and of the other blocks on that level.
    Variables that take a whole block or dict are left out. Where two places
    have a field of one name, the holding level comes first, then the blocks
    in name order.
    """
    parent = known.block_parents[stem]
    return _fields_of((parent, *_blocks_under(parent, known, stem)), known)


def _blocks_under(parent: str, known: KnownVariables, skip: str = "") -> list[str]:
    """Return the stems of the blocks directly under ``parent``, in name order."""
    return sorted(
        stem
        for stem, other_parent in known.block_parents.items()
        if other_parent == parent and stem != skip
    )


def _fields_of(homes: Sequence[str], known: KnownVariables) -> dict[str, str]:
    """Map the fields of each level or block in ``homes`` to their variables.

    Variables that take a whole block or dict are left out. Where two homes
    have a field of one name, the first home wins.
    """
    containers = {*known.block_stems.values(), *known.open_stems.values()}
    fields: dict[str, str] = {}
    for home in homes:
        for name in sorted(known.names - containers):
            if name.startswith(home) and _home(name, known) == _home(home, known):
                fields.setdefault(name.removeprefix(home), name)
    return fields


def _misplaced(name: str, stem: str | None, known: KnownVariables) -> str | None:
    """Return the variable of the field that ``name`` spells in the wrong place.

    ``stem`` is the block that ``name`` is in, or None outside any block. A
    field whose block is a settings class of its own does not count (see
    :func:`misplaced_variables`).
    """
    if stem is not None:
        fields = _neighbour_fields(stem, known)
        field_name = name.removeprefix(stem)
    else:
        level = max(
            (prefix for prefix in known.prefixes if name.startswith(prefix)),
            key=len,
            default=None,
        )
        if level is None:
            return None
        fields = _fields_of(_blocks_under(level, known), known)
        field_name = name.removeprefix(level)
    target = fields.get(field_name)
    home = _home(target, known) if target is not None else None
    if home is not None:
        model = known.block_models.get(known.block_stems[home])
        if model is not None and issubclass(model, BaseSettings):
            return None
    return target


def _home(name: str, known: KnownVariables) -> str | None:
    """Return the stem of the innermost block that ``name`` is a field of."""
    stems = [stem for stem in known.block_stems if name.startswith(stem)]
    return max(stems, key=len, default=None)


def _closest(name: str, names: Collection[str]) -> str | None:
    """Return the known name a misspelled one most likely meant, if any.

    A name cut short (``..._SSL_CA`` for ``..._SSL_CA_LOCATION``) is matched
    by prefix first, because string similarity prefers a name of the same
    length, such as ``..._SASL_MECHANISM``.
    """
    longer = sorted(
        (known for known in names if known.startswith(f"{name}_")),
        key=lambda known: (len(known), known),
    )
    if longer:
        return longer[0]
    matches = difflib.get_close_matches(name, sorted(names), n=1, cutoff=0.8)
    return matches[0] if matches else None


def warn_unknown_variables(
    settings_class: type[BaseSettings], environ: Mapping[str, str]
) -> None:
    """Log one WARNING per unknown variable outside a block, once per process.

    A misplaced variable (:func:`misplaced_variables`) and one inside a block
    (:func:`unknown_block_fields`) get no warning, since the loader stops the
    process with an error that names them.
    """
    for part in unknown_variables(settings_class, environ):
        if part.variable in _reported or part.is_misplaced or part.block is not None:
            continue
        _reported.add(part.variable)
        if part.closest is None:
            logger.warning("unknown setting ignored variable=%s", part.variable)
        else:
            logger.warning(
                "unknown setting ignored variable=%s closest_valid=%s",
                part.variable,
                part.closest,
            )


def repeated_variables(
    settings_class: type[BaseSettings], environ: Mapping[str, str]
) -> list[list[str]]:
    """Return the settings that ``environ`` sets under more than one spelling.

    pydantic-settings 2.16 matches names regardless of case and reads the
    spelling that comes last in the environment, so each group keeps that
    order.
    """
    known = known_variables(settings_class)
    spellings: dict[str, list[str]] = {}
    for variable in environ:
        if known.is_known(variable.upper()):
            spellings.setdefault(variable.upper(), []).append(variable)
    return [group for _, group in sorted(spellings.items()) if len(group) > 1]


def warn_repeated_variables(
    settings_class: type[BaseSettings], environ: Mapping[str, str]
) -> None:
    """Log one WARNING per setting set under several spellings, once per process."""
    for group in repeated_variables(settings_class, environ):
        if group[0].upper() in _reported:
            continue
        _reported.add(group[0].upper())
        logger.warning(
            "setting set under more than one spelling variables=%s read=%s",
            ",".join(group),
            group[-1],
        )


def _prefix(settings_class: type[BaseSettings]) -> str:
    return str(settings_class.model_config.get("env_prefix", "")).upper()


def _settings_classes() -> Iterator[type[BaseSettings]]:
    """Yield every settings class defined so far in this process."""
    pending = list(BaseSettings.__subclasses__())
    seen: set[type[BaseSettings]] = set()
    while pending:
        settings_class = pending.pop()
        if settings_class in seen:
            continue
        seen.add(settings_class)
        pending.extend(settings_class.__subclasses__())
        yield settings_class


def _add_block(
    settings_class: type[BaseSettings],
    known: KnownVariables,
    visited: set[type[BaseSettings]],
) -> None:
    """Add a class that reads variables under its own prefix, and its blocks."""
    if settings_class in visited:
        return
    visited.add(settings_class)
    prefix = _prefix(settings_class)
    if not prefix:
        # A class without a prefix reads names that are not Cartwheel's.
        return
    known.prefixes.add(prefix)
    delimiter = str(settings_class.model_config.get("env_nested_delimiter") or "")
    for name, info in settings_class.model_fields.items():
        variable = f"{prefix}{name}".upper()
        known.names.add(variable)
        _add_block_model(info.annotation, variable, known)
        if delimiter:
            if _is_collection(info.annotation):
                # pydantic-settings 2.16 reads a list, set or tuple field through
                # the delimiter too, but not a scalar one.
                known.value_stems[f"{variable}{delimiter}"] = variable
            _add_nested(
                info.annotation, f"{variable}{delimiter}", delimiter, known, prefix
            )
        for block in model_classes(info.annotation):
            if issubclass(block, BaseSettings):
                _add_block(block, known, visited)


def _add_nested(
    annotation: Any, stem: str, delimiter: str, known: KnownVariables, parent: str
) -> None:
    """Add the names that fill a nested field through the nested delimiter.

    ``parent`` is the prefix or block stem that the field's variable starts with.
    """
    stem = stem.upper()
    if _is_dict(annotation):
        known.open_stems[stem] = stem.removesuffix(delimiter)
        return
    for model in model_classes(annotation):
        known.block_stems[stem] = stem.removesuffix(delimiter)
        known.block_parents[stem] = parent.upper()
        for name, info in model.model_fields.items():
            variable = f"{stem}{name}".upper()
            known.names.add(variable)
            _add_block_model(info.annotation, variable, known)
            if not model_classes(info.annotation) and not _is_dict(info.annotation):
                known.value_stems[f"{variable}{delimiter}"] = variable
            _add_nested(
                info.annotation, f"{variable}{delimiter}", delimiter, known, stem
            )


def _add_block_model(annotation: Any, variable: str, known: KnownVariables) -> None:
    models = model_classes(annotation)
    if models:
        known.block_models[variable] = models[0]


def _is_dict(annotation: Any) -> bool:
    return get_origin(annotation) in (dict, Mapping)


def _is_collection(annotation: Any) -> bool:
    """Return whether ``annotation`` is a list, set or tuple, or a union with one."""
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is_collection(argument) for argument in get_args(annotation))
    kind = get_origin(annotation) or annotation
    return (
        isinstance(kind, type)
        and issubclass(kind, (Sequence, AbstractSet))
        and not issubclass(kind, (str, bytes))
    )


def model_classes(annotation: Any) -> list[type[BaseModel]]:
    """Return the pydantic models in an annotation such as ``Model | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) in (Union, types.UnionType):
        return [
            model
            for argument in get_args(annotation)
            for model in model_classes(argument)
        ]
    return []
