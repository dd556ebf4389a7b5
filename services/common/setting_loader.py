"""Load settings from the environment, and explain the ones that fail.

:func:`load_settings` validates a settings class and turns every failure into
one :class:`InvalidSettingsError` whose lines name the variable, the value
(secrets masked) and the expected form.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, get_args

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsError

from services.common.errors import InvalidSettingsError
from services.common.setting_blocks import (
    block_form,
    example_object,
    field_info,
    has_secret,
    is_secret_field,
    json_holder,
    mask_block_object,
    spelled,
    variable_field,
)
from services.common.setting_forms import describe_failure, expected_form
from services.common.setting_json import (
    RepeatedKey,
    is_decoded_as_json,
    repeated_json_keys,
)
from services.common.setting_names import (
    UnknownKey,
    UnknownVariable,
    known_variables,
    misplaced_variables,
    model_classes,
    unknown_block_fields,
    unknown_json_keys,
    variables_under_value,
    warn_repeated_variables,
    warn_unknown_variables,
)
from services.common.setting_secrets import mask_value

__all__ = [
    "CommandLineValue",
    "child_environment",
    "describe_validation_error",
    "expected_form",
    "join_error_lines",
    "load_settings",
]

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def child_environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """Return this process's environment with ``overrides`` applied, for a child.

    Child processes read their own settings from it, so this is the one place
    besides the settings classes that reads the environment.
    """
    return {**os.environ, **overrides}


@dataclass(frozen=True)
class CommandLineValue:
    """A setting given by a command-line option instead of its variable.

    Pass it to :func:`load_settings` as an override, so that an invalid value
    is reported under the option that carried it.
    """

    option: str
    value: Any


def load_settings(settings_class: type[SettingsT], **overrides: Any) -> SettingsT:
    """Read settings from the environment and validate them.

    Each override replaces the field of that name; wrap one in
    :class:`CommandLineValue` when it came from a command-line option.

    A variable under the prefix of ``settings_class`` or of a nested block
    that names no setting is logged as a WARNING, once per process, with the
    closest valid name when one is close. Names are matched regardless of
    case, and a setting set under two spellings is logged as a WARNING too.
    Three name errors stop the process like an invalid value: a variable that
    spells a setting in the wrong place, such as
    ``CARTWHEEL_SCORER_TRENDING_WEIGHT``, a variable inside a nested block
    that names none of its settings, such as
    ``CARTWHEEL_SCORER_WEIGHTS__RANKER_BLND``, and a key that names no
    setting in a block given whole as a JSON object. So does a key given
    twice in one object of a JSON value, such as ``{"click": 1, "CLICK": 2}``
    for a block, whose keys are matched regardless of case.

    Raises:
        InvalidSettingsError: one line per invalid variable, each with the
            variable's name, the value it contains and the expected form.
    """
    warn_unknown_variables(settings_class, os.environ)
    warn_repeated_variables(settings_class, os.environ)
    problems = [
        *(
            _describe_misplaced(settings_class, part)
            for part in misplaced_variables(settings_class, os.environ)
        ),
        *(
            _describe_unknown_field(settings_class, part)
            for part in unknown_block_fields(settings_class, os.environ)
        ),
        *(
            _describe_unknown_key(settings_class, key)
            for key in unknown_json_keys(settings_class, os.environ)
        ),
        *(
            _describe_repeated_key(settings_class, key)
            for key in repeated_json_keys(settings_class, os.environ)
        ),
        *_null_values(settings_class),
    ]
    try:
        settings = _load_settings(settings_class, overrides)
    except InvalidSettingsError as exc:
        if not problems:
            raise
        raise InvalidSettingsError(join_error_lines([str(exc), *problems])) from exc
    if problems:
        raise InvalidSettingsError(join_error_lines(problems))
    return settings


def describe_validation_error(
    exc: ValidationError, settings_class: type[BaseSettings]
) -> str:
    """Return the lines that :func:`load_settings` would report for ``exc``.

    This is for a class that is validated outside :func:`load_settings`, such
    as one read only to fill another setting's default.
    """
    return _describe(exc, settings_class, (), {})


def _describe_misplaced(
    settings_class: type[BaseSettings], part: UnknownVariable
) -> str:
    """Name a variable that spells a setting in the wrong place, and the right one."""
    value = os.environ[part.variable]
    found = variable_field(settings_class, str(part.closest))
    if found is not None and is_secret_field(found[1]):
        value = mask_value(value)
    if part.block is None:
        problem = "the setting is inside a block"
    else:
        problem = f"the block {part.block} has no such setting"
    return (
        f"invalid setting {part.variable}={value!r}: {problem}, so this name "
        f"would be ignored; set {part.closest} instead"
    )


def _describe_unknown_field(
    settings_class: type[BaseSettings], part: UnknownVariable
) -> str:
    """Name a variable inside a block that names none of its settings.

    The line ends with the closest valid name, or else with the block's
    settings. The value is masked when the block contains a secret, since
    the name may be a misspelled secret, or when the closest name is one.
    """
    known = known_variables(settings_class)
    block = str(part.block)
    model = known.block_models[block]
    stem = next(stem for stem, owner in known.block_stems.items() if owner == block)

    value = os.environ[part.variable]
    closest = variable_field(settings_class, part.closest) if part.closest else None
    if has_secret(model) or (closest is not None and is_secret_field(closest[1])):
        value = mask_value(value)

    if part.closest is None:
        names = ", ".join(name.upper() for name in model.model_fields)
        hint = f"expected {stem} followed by one of {names}"
    elif part.is_outside_block:
        hint = f"did you mean {part.closest}, outside this block?"
    else:
        hint = f"did you mean {part.closest}?"
    return (
        f"invalid setting {part.variable}={value!r}: the block {block} has no "
        f"such setting, so this name would be ignored; {hint}"
    )


def _null_values(settings_class: type[BaseSettings]) -> list[str]:
    """Describe each block, list, set or dict variable set to JSON ``null``.

    pydantic-settings reads ``null`` for such a variable as if it were unset,
    so the setting would silently keep its default.
    """
    problems = []
    for variable in sorted(os.environ):
        if os.environ[variable].strip() != "null":
            continue
        found = variable_field(settings_class, variable)
        if found is None:
            continue
        owner, info = found
        if type(None) in get_args(info.annotation) or not is_decoded_as_json(
            info.annotation
        ):
            continue
        models = model_classes(info.annotation)
        if models:
            form = block_form(owner, variable, models[0])
        else:
            form = (
                f"null would leave the default in place; expected {expected_form(info)}"
            )
        problems.append(f"invalid setting {variable}='null': {form}")
    return problems


def _describe_unknown_key(settings_class: type[BaseSettings], key: UnknownKey) -> str:
    """Name a block variable, its JSON key that names no setting, and the closest."""
    value = _masked_value(settings_class, key.variable)
    if key.closest is None:
        hint = "'cartwheel config' and docs/configuration.md list the block's settings"
    else:
        parent = key.key.rpartition(".")[0]
        hint = f'did you mean "{f"{parent}." if parent else ""}{key.closest}"?'
    return (
        f'invalid setting {key.variable}={value!r}: the key "{key.key}" names no '
        f"setting of this block, so it would be ignored; {hint}"
    )


def _describe_repeated_key(settings_class: type[BaseSettings], key: RepeatedKey) -> str:
    """Name a variable whose JSON value gives one key twice in an object."""
    value = _masked_value(settings_class, key.variable)
    if key.key == key.first:
        problem = f'the key "{key.key}" appears more than once in one object'
    else:
        problem = (
            f'the keys "{key.first}" and "{key.key}" name the same setting, '
            "because keys are matched regardless of case"
        )
    return (
        f"invalid setting {key.variable}={value!r}: {problem}; expected each key "
        "once, because readers disagree on which value counts"
    )


def _load_settings(
    settings_class: type[SettingsT], overrides: Mapping[str, Any]
) -> SettingsT:
    options = {
        name: value.option
        for name, value in overrides.items()
        if isinstance(value, CommandLineValue)
    }
    values = {
        name: value.value if isinstance(value, CommandLineValue) else value
        for name, value in overrides.items()
    }
    overridden = set(values)
    # Each nested block (Kafka, Redis, topics) is loaded on its own first, so
    # that the errors of every block are reported together.
    problems: list[str] = []
    for name, block_class in _settings_blocks(settings_class):
        if name in overridden:
            continue
        try:
            values[name] = _load_settings(block_class, {})
        except InvalidSettingsError as exc:
            problems.append(str(exc))
            # Unvalidated defaults stand in, so the fields outside the
            # blocks can still be checked.
            values[name] = _stand_in(block_class)
    if problems:
        problems.extend(_outer_problems(settings_class, values, overridden, options))
        raise InvalidSettingsError(join_error_lines(problems))
    try:
        return settings_class(**values)
    except ValidationError as exc:
        raise InvalidSettingsError(
            _describe(exc, settings_class, overridden, options)
        ) from exc
    except SettingsError as exc:
        raise InvalidSettingsError(_describe_unparsed(exc, settings_class)) from exc


def _settings_blocks(
    settings_class: type[BaseSettings],
) -> list[tuple[str, type[BaseSettings]]]:
    """Return the fields that hold a settings block read from its own variables."""
    prefix = str(settings_class.model_config.get("env_prefix", "")).upper()
    delimiter = str(settings_class.model_config.get("env_nested_delimiter") or "")
    blocks: list[tuple[str, type[BaseSettings]]] = []
    for name, info in settings_class.model_fields.items():
        annotation = info.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseSettings)):
            continue
        # A factory with arguments of its own would differ from a plain load.
        factory: object = info.default_factory
        if factory != annotation:
            continue
        # Variables such as PREFIX_RULES__SIZE fill the block through the
        # enclosing class, so loading it alone would lose them.
        variable = f"{prefix}{name}".upper()
        nested = f"{variable}{delimiter}".upper() if delimiter else None
        if any(
            key.upper() == variable or (nested and key.upper().startswith(nested))
            for key in os.environ
        ):
            continue
        blocks.append((name, annotation))
    return blocks


def _stand_in(settings_class: type[SettingsT]) -> SettingsT:
    """Return the class with its defaults, unvalidated and without reading variables.

    ``model_construct`` alone would build nested blocks through their default
    factories, which read and validate their variables.
    """
    nested = {
        name: _stand_in(info.annotation)
        for name, info in settings_class.model_fields.items()
        if isinstance(info.annotation, type)
        and issubclass(info.annotation, BaseSettings)
    }
    return settings_class.model_construct(None, **nested)


def _outer_problems(
    settings_class: type[BaseSettings],
    values: Mapping[str, Any],
    overridden: Collection[str],
    options: Mapping[str, str],
) -> list[str]:
    """Return the errors of the fields outside the nested blocks, if any are found.

    The blocks are stand-ins here, so a validator that reads them may fail in
    another way. Such a failure is left out, because the blocks' own errors
    are reported already.
    """
    try:
        settings_class(**values)
    except ValidationError as exc:
        return [_describe(exc, settings_class, overridden, options)]
    except Exception:
        return []
    return []


def join_error_lines(messages: Sequence[str]) -> str:
    """Join error messages, keeping each line once (two blocks may share a variable)."""
    lines = [line for message in messages for line in message.splitlines()]
    return "\n".join(dict.fromkeys(lines))


def _describe_unparsed(exc: SettingsError, settings_class: type[BaseSettings]) -> str:
    """Name the variables behind a field whose value is not valid JSON.

    Lists, sets and nested blocks are read as JSON, and pydantic-settings
    reports a failure only by field name. So every Cartwheel variable of
    that field whose value is not valid JSON is listed, with its value and
    the field's expected form.
    """
    found = re.search(r'field "([^"]+)"', str(exc))
    field = found.group(1).upper() if found else ""
    candidates = [
        (name, value)
        for name, value in sorted(os.environ.items())
        if name.upper().startswith("CARTWHEEL_")
        and field
        and (name.upper().endswith(f"_{field}") or f"_{field}__" in name.upper())
    ]
    # The error names a nested block (such as SURFACES), not the variable, so
    # the block's variables whose values parse as JSON are left out.
    unparsed = [
        (name, value) for name, value in candidates if not _is_json(value)
    ] or candidates
    lines = [
        f"invalid setting {name}={_masked_value(settings_class, name)!r}: "
        f"{_expected_json(settings_class, name)}"
        for name, _ in unparsed
    ]
    return "\n".join(lines) or f"invalid setting: {exc}"


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _expected_json(settings_class: type[BaseSettings], variable: str) -> str:
    """Return the problem and expected form for a ``variable`` that is not JSON."""
    found = variable_field(settings_class, variable)
    if found is None:
        return 'expected a JSON value, such as ["a", "b"] for a list'
    owner, info = found
    models = model_classes(info.annotation)
    if models:
        return block_form(owner, variable, models[0])
    form = expected_form(info)
    if not form:
        return 'expected a JSON value, such as ["a", "b"] for a list'
    return f"the value is not valid JSON; expected {form}"


def _masked_value(settings_class: type[BaseSettings], variable: str) -> str:
    """Return a variable's value for an error line, with its secrets masked.

    A block given as a JSON object keeps its text unless a secret is in it.
    Then the object is written again with each secret masked, and so is any
    text value of a key that names no field, since it may be a misspelled
    secret. Other text is masked whole when the block has a secret field.
    """
    value = os.environ[variable]
    found = variable_field(settings_class, variable)
    if found is None:
        return value
    info = found[1]
    if is_secret_field(info):
        return mask_value(value)
    models = model_classes(info.annotation)
    if not models or not has_secret(models[0]):
        return value
    try:
        # A key given twice keeps only its last value, so the text would show
        # a value that the parsed object no longer holds.
        parsed = json.loads(value, object_pairs_hook=_unique_keys)
    except ValueError:
        return mask_value(value)
    if not isinstance(parsed, dict):
        return mask_value(value)
    masked = mask_block_object(models[0], parsed, mask_value)
    return value if masked == parsed else json.dumps(masked)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a key appears twice in one object")
    return dict(pairs)


def _describe(
    exc: ValidationError,
    settings_class: type[BaseSettings],
    overridden: Collection[str],
    options: Mapping[str, str],
) -> str:
    # A nested block that load_settings did not load on its own fails inside
    # its default factory, so the error carries the nested class's title.
    failed_class = _find_settings_class(settings_class, exc.title) or settings_class
    if failed_class is not settings_class:
        overridden, options = (), {}
    lines = []
    for error in exc.errors():
        lines += _describe_error(failed_class, error, overridden, options)
    return "\n".join(lines)


def _describe_error(
    settings_class: type[BaseSettings],
    error: ErrorDetails,
    overridden: Collection[str],
    options: Mapping[str, str],
) -> list[str]:
    """Return the lines for one validation error of ``settings_class``."""
    loc = error["loc"]
    field = str(loc[0]) if loc else ""
    # A list element's position is part of the location, not of the name.
    names = [str(part) for part in loc if not isinstance(part, int)]
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    delimiter = str(settings_class.model_config.get("env_nested_delimiter") or "_")
    variable = _spelled(f"{prefix}{delimiter.join(names)}".upper())
    if error["type"] == "extra_forbidden" and _is_named(settings_class, variable):
        # A settings block such as Kafka's rejects a field it lacks, and the
        # name checks of load_settings report the variable already, with
        # its value masked and the closest valid name.
        return []

    if field not in overridden:
        if isinstance(error.get("input"), dict):
            parts = variables_under_value(settings_class, variable, os.environ)
            if parts:
                return _describe_parts(settings_class, loc, variable, parts)
        holder = json_holder(settings_class, names, os.environ)
        if holder is not None:
            return _describe_in_json(settings_class, error, *holder)

    # An override was rejected, not the variable, which may be valid.
    if field in overridden:
        value = error.get("input")
    else:
        value = os.environ.get(variable, error.get("input"))
    info = field_info(settings_class, loc)
    if value is not None and info is not None and is_secret_field(info):
        value = mask_value(str(value))
    elif field not in overridden and variable in os.environ:
        value = _masked_value(settings_class, variable)

    models = model_classes(info.annotation) if info is not None else []
    if error["type"] == "model_type" and models:
        expected = block_form(settings_class, variable, models[0])
    else:
        expected = describe_failure(settings_class, loc, error["msg"])

    if field in options:
        return [
            f"invalid option {options[field]}={value!r} (in place of "
            f"{variable}): {expected}"
        ]
    if variable not in os.environ and (value is None or field not in overridden):
        # Only a default can fail without its variable or an override.
        default = "" if value is None else f", default {value!r}"
        return [f"invalid setting {variable} (not set{default}): {expected}"]
    return [f"invalid setting {variable}={value!r}: {expected}"]


def _is_named(settings_class: type[BaseSettings], variable: str) -> bool:
    """Return whether a name check of :func:`load_settings` reports ``variable``."""
    parts = [
        *misplaced_variables(settings_class, os.environ),
        *unknown_block_fields(settings_class, os.environ),
    ]
    return any(part.variable == variable for part in parts)


def _describe_in_json(
    settings_class: type[BaseSettings], error: ErrorDetails, holder: str, path: str
) -> list[str]:
    """Name the block variable and the key of its JSON object that is invalid."""
    if error["type"] == "extra_forbidden":
        # unknown_json_keys reports the key, with the closest valid one.
        return []
    info = field_info(settings_class, error["loc"])
    models = model_classes(info.annotation) if info is not None else []
    if error["type"] == "model_type" and models:
        expected = (
            "expected a JSON object of the block's settings, such as "
            f"{example_object(models[0])}"
        )
    else:
        expected = describe_failure(settings_class, error["loc"], error["msg"])
    value = _masked_value(settings_class, holder)
    return [f'invalid setting {holder}={value!r}, key "{path}": {expected}']


def _describe_parts(
    settings_class: type[BaseSettings],
    loc: tuple[int | str, ...],
    field_variable: str,
    parts: Sequence[UnknownVariable],
) -> list[str]:
    """Name each variable read into a single-value field as a block.

    The error's input is the block, such as ``{'weight': '1'}``, and its
    location is the field's, so each line names the variable that was set
    instead, with its value and the closest valid name.
    """
    info = field_info(settings_class, loc)
    is_secret = info is not None and is_secret_field(info)
    lines = []
    for part in parts:
        value = os.environ[part.variable]
        if is_secret:
            value = mask_value(value)
        if part.closest in (None, field_variable):
            action = f"set {field_variable} itself, or unset {part.variable}"
        else:
            action = f"did you mean {part.closest}?"
        lines.append(
            f"invalid setting {part.variable}={value!r}: {field_variable} is a "
            f"single value, not a block of fields; {action}"
        )
    return lines


def _spelled(variable: str) -> str:
    """Return ``variable`` as this process's environment spells it."""
    return spelled(variable, os.environ)


def _find_settings_class(
    root: type[BaseSettings], title: str
) -> type[BaseSettings] | None:
    if root.__name__ == title:
        return root
    for info in root.model_fields.values():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
            found = _find_settings_class(annotation, title)
            if found is not None:
                return found
    return None
