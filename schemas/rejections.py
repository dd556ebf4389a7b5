"""Rejections: pydantic validation errors named as one reason and one message.

Events and catalog records share one mapping from pydantic's error types to a
:class:`RejectionReason`, so a fault gets the same reason on every topic. Each
kind of document describes itself with :class:`RejectionRules`: what it is
called, which fields name its kind, which fields hold times, and the expected
form of each field. Fields named ``*_id``, and the items of lists named
``*_ids``, are ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from schemas.deadletters import RejectionReason
from schemas.events import MAX_ID_LENGTH

__all__ = ["ID_FORM", "TIME_FORM", "Rejection", "RejectionRules", "reject"]

ID_FORM = (
    f"a string of 1 to {MAX_ID_LENGTH} characters, no control characters, "
    "not only whitespace"
)
TIME_FORM = (
    "an RFC 3339 time with a UTC offset, such as '2019-10-01T00:00:00Z', that "
    "falls in the years 1 to 9999 in UTC"
)

_MAX_VALUE_REPR = 60

# pydantic-core's JSON parser names half a UTF-16 surrogate pair in a \u
# escape with one of two phrases. "unexpected end of hex escape" is a high half
# not followed by a \u escape. "lone leading surrogate in hex escape" is a low
# half without a high one before it, or a high half followed by a \u escape
# of anything but a low half. Only the parser's surrogate checks use these
# phrases.
_LONE_SURROGATE_PHRASES = (
    "unexpected end of hex escape",
    "lone leading surrogate in hex escape",
)
_LONE_SURROGATE = (
    "invalid \\u escape: lone surrogate{position}; expected \\uD800-\\uDBFF "
    "directly followed by \\uDC00-\\uDFFF, the pair that encodes one "
    "character above U+FFFF"
)


@dataclass(frozen=True)
class Rejection:
    """The reason one message was rejected, in a form a person can act on.

    Attributes:
        reason: the kind of fault; one code per kind, stable for metrics.
        message: names the field, the offending value (truncated) and the
            expected form.
    """

    reason: RejectionReason
    message: str


@dataclass(frozen=True)
class RejectionRules:
    """The naming rules for the faults of one kind of document.

    Attributes:
        document: what messages call the document, such as ``event``.
        expected_forms: the expected form of each field, by field name.
        kind_fields: fields whose string value names the kind of document,
            with the reason for a value that names no known kind.
        time_fields: fields that hold an RFC 3339 time.
    """

    document: str
    expected_forms: Mapping[str, str]
    kind_fields: Mapping[str, RejectionReason] = field(default_factory=dict)
    time_fields: frozenset[str] = frozenset()


def reject(exc: ValidationError, rules: RejectionRules) -> Rejection:
    """Name the leading fault of an invalid document, and count the others.

    A wrong ``schema_version`` explains every other mismatch, so its fault
    leads; otherwise the first fault in field order does.
    """
    errors = exc.errors(include_url=False)
    error = next((e for e in errors if e["loc"][:1] == ("schema_version",)), errors[0])
    reason = _reason(error, rules)
    message = _message(error, reason, rules)
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem(s))"
    return Rejection(reason, message)


def _reason(error: ErrorDetails, rules: RejectionRules) -> RejectionReason:
    kind = error["type"]
    loc = error["loc"]
    name = _field_name(loc)
    if kind == "json_invalid":
        return RejectionReason.INVALID_JSON
    if not loc:
        # A check across fields, such as a window that ends before it starts,
        # fails the whole document without being a wrong type.
        if kind.endswith("_type"):
            return RejectionReason.NOT_AN_OBJECT
        return RejectionReason.OUT_OF_RANGE
    if loc == ("schema_version",):
        return RejectionReason.UNSUPPORTED_SCHEMA_VERSION

    if kind == "missing":
        return RejectionReason.MISSING_FIELD
    if kind == "extra_forbidden":
        return RejectionReason.UNKNOWN_FIELD

    if name in rules.kind_fields and isinstance(error["input"], str):
        return rules.kind_fields[name]
    if name in rules.time_fields and kind != "datetime_type":
        return RejectionReason.INVALID_TIME
    if _is_id(loc) and kind in ("string_too_short", "string_pattern_mismatch"):
        return RejectionReason.INVALID_ID
    if _is_id(loc) and kind == "string_too_long":
        return RejectionReason.ID_TOO_LONG

    if kind.endswith("_type") or name in rules.kind_fields:
        return RejectionReason.WRONG_TYPE
    if _is_negative(error["input"]):
        return RejectionReason.NEGATIVE_VALUE
    return RejectionReason.OUT_OF_RANGE


def _json_detail(detail: str) -> str:
    """Return the parser's error, with a lone surrogate named as such."""
    for phrase in _LONE_SURROGATE_PHRASES:
        if detail.startswith(phrase):
            return _LONE_SURROGATE.format(position=detail.removeprefix(phrase))
    return detail


def _message(
    error: ErrorDetails, reason: RejectionReason, rules: RejectionRules
) -> str:
    if reason is RejectionReason.INVALID_JSON:
        if _starts_with_bom(error["input"]):
            return (
                "message value starts with a UTF-8 byte order mark (EF BB BF); "
                "expected JSON text without one, as RFC 8259 section 8.1 asks "
                "of senders (save the file as UTF-8 without BOM)"
            )
        detail = _json_detail(error["msg"].removeprefix("Invalid JSON: "))
        return f"message value is not valid UTF-8 JSON ({detail})"
    if reason is RejectionReason.NOT_AN_OBJECT:
        return (
            f"message value is {_short_repr(error['input'])}; "
            f"expected a JSON object with the {rules.document}'s fields"
        )
    if not error["loc"]:
        return error["msg"].removeprefix("Value error, ")
    path = ".".join(str(part) for part in error["loc"])
    if reason is RejectionReason.MISSING_FIELD:
        return f"field {path!r} is missing; expected {_expected_form(error, rules)}"
    if reason is RejectionReason.UNKNOWN_FIELD:
        return (
            f"field {path!r} is not part of the {rules.document} schema; remove it "
            "or check the producer's schema version"
        )
    return (
        f"field {path!r} has value {_short_repr(error['input'])}; "
        f"expected {_expected_form(error, rules)}"
    )


def _starts_with_bom(value: object) -> bool:
    if isinstance(value, bytes | bytearray):
        return value.startswith(b"\xef\xbb\xbf")
    return isinstance(value, str) and value.startswith("\ufeff")


def _field_name(loc: tuple[int | str, ...]) -> str:
    """Return the innermost field name of a location; list indexes are skipped."""
    return next((part for part in reversed(loc) if isinstance(part, str)), "")


def _is_id(loc: tuple[int | str, ...]) -> bool:
    last = loc[-1]
    if isinstance(last, str):
        return last.endswith("_id")
    return _field_name(loc).endswith("_ids")


def _expected_form(error: ErrorDetails, rules: RejectionRules) -> str:
    if _is_id(error["loc"]):
        return ID_FORM
    return rules.expected_forms.get(
        _field_name(error["loc"]), f"a value that matches the {rules.document} schema"
    )


def _short_repr(value: Any) -> str:
    # The input was JSON, so its constants are spelled as in JSON.
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    text = repr(value)
    if len(text) <= _MAX_VALUE_REPR:
        return text
    if isinstance(value, str):
        head = repr(value[: _MAX_VALUE_REPR - 10])
        return f"{head}... ({len(value)} characters)"
    return f"{text[: _MAX_VALUE_REPR - 3]}... ({len(text)} characters as text)"


def _is_negative(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value < 0
