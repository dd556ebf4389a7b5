"""Integer settings written as plain base-10 digits, and nothing else.

In lax mode pydantic 2.14 reads ``'29192.0'``, ``' 29192'`` and
``'29_192'`` as 29192, and JSON ``true`` as 1. A mistyped value, or one
meant as a fraction, would then start a process with a number other than
the one written. Every settings class and nested block derives from
:class:`PlainIntegers`, so an integer setting takes text only as digits
with an optional sign, and a JSON value only as a whole number.
"""

from __future__ import annotations

import re
import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationInfo, field_validator

__all__ = ["PlainIntegers"]

_PLAIN_INTEGER = re.compile(r"[+-]?[0-9]+")
_NONE = type(None)


class PlainIntegers(BaseModel):
    """Base of settings classes and blocks: integers take only plain digits.

    A settings class lists it before ``BaseSettings``, and a nested block
    derives from it instead of ``BaseModel``. The check runs before
    pydantic's own, so a value that fails it gets a single error, which
    names the problem. Values given as arguments in code are checked too.
    """

    @field_validator("*", mode="before")
    @classmethod
    def _require_plain_integer(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name is None:
            return value
        field = cls.model_fields.get(info.field_name)
        if field is None or not _is_integer(field.annotation):
            return value
        if isinstance(value, str):
            is_plain = _PLAIN_INTEGER.fullmatch(value) is not None
        else:
            # JSON true or 50.0 in a block's object is no more plain than '50.0'.
            is_plain = not isinstance(value, bool | float)
        if not is_plain:
            raise ValueError(
                "the value is not a plain base-10 integer (digits with an "
                "optional sign)"
            )
        return value


def _is_integer(annotation: Any) -> bool:
    """Return whether ``annotation`` is ``int`` or ``int | None``.

    ``bool`` is a subclass of ``int`` but not an integer setting, and a union
    with another type, such as ``int | str``, may take other text.
    """
    if annotation is int:
        return True
    if get_origin(annotation) not in (Union, types.UnionType):
        return False
    others = [argument for argument in get_args(annotation) if argument is not _NONE]
    return others == [int]
