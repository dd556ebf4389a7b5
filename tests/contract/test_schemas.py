"""The JSON Schemas, the models, parse_event and the catalog consumer agree.

The corpus lives in ``tests/contract/corpus/<schema>/``:

- ``valid/``: every validator accepts the document;
- ``invalid/``: every validator rejects it;
- ``beyond-schema/``: the JSON Schema accepts it, but the model or
  ``parse_event`` rejects it, because the rule compares two fields or needs
  the clock or the byte size, which JSON Schema cannot express. Each schema's
  ``description`` lists these rules.

Event documents outside ``valid/`` are named ``<reason>--<case>.json``, where
``<reason>`` is the RejectionReason that ``parse_event`` must return.
Models validate in strict JSON mode, as ``parse_event`` does on the wire.
Catalog documents also go through the catalog consumer's own check, keyed as a
producer keys them, since it picks the model by the key's kind.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from referencing import Registry, Resource

import schemas
from schemas import (
    DeadLetter,
    Event,
    EventContext,
    ItemRecord,
    PromotionRecord,
    ReviewRecord,
    Slate,
    SlateItem,
)
from schemas.deadletters import RejectionReason
from schemas.events import ID_PATTERN, TIME_PATTERN, EventType
from schemas.recommendations import CandidateSource, Surface
from schemas.training import TrainingExample
from schemas.validation import Rejection, parse_event
from services.features.catalog import parse_catalog_message
from services.features.errors import CatalogRecordError

SCHEMA_DIR = Path(schemas.__file__).parent / "json"
CORPUS_DIR = Path(__file__).parent / "corpus"

# Far enough after every corpus time that only the year-2100 cases are future.
NOW = datetime(2026, 1, 1, tzinfo=UTC)

MODELS: dict[str, type[BaseModel]] = {
    "event": Event,
    "item": ItemRecord,
    "promotion": PromotionRecord,
    "review": ReviewRecord,
    "slate": Slate,
    "dead-letter": DeadLetter,
    "training-example": TrainingExample,
}

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)


def _load_schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (SCHEMA_DIR / f"{name}.schema.json").read_text()
    )
    return loaded


def _registry() -> Registry:
    resources = [
        (schema["$id"], Resource.from_contents(schema))
        for schema in (_load_schema(name) for name in MODELS)
    ]
    return Registry().with_resources(resources)


def _is_rfc3339(value: object) -> bool:
    # Formats apply only to strings; "type" rejects everything else.
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    # RFC 3339 allows a leap second, which datetime cannot parse.
    text = value.upper()
    if text[17:19] == "60":
        text = f"{text[:17]}59{text[19:]}"
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


_FORMATS = jsonschema.FormatChecker()
_FORMATS.checks("date-time")(_is_rfc3339)
_REGISTRY = _registry()


def _schema_accepts(
    name: str, raw: bytes, formats: jsonschema.FormatChecker | None = _FORMATS
) -> bool:
    """Validate against a schema, by default with the date-time format checked.

    ``formats=None`` is a validator as most producers run it: JSON Schema
    2020-12 treats ``format`` as an annotation unless a checker is added.
    """
    try:
        document = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError):
        return False
    validator = jsonschema.Draft202012Validator(
        _load_schema(name), registry=_REGISTRY, format_checker=formats
    )
    return validator.is_valid(document)


def _reject_constant(constant: str) -> None:
    raise ValueError(f"{constant} is not valid JSON")


def _model_accepts(name: str, raw: bytes) -> bool:
    try:
        MODELS[name].model_validate_json(raw, strict=True)
    except ValidationError:
        return False
    return True


def _corpus(kind: str) -> list[tuple[str, Path]]:
    return sorted(
        (path.parent.parent.name, path) for path in CORPUS_DIR.glob(f"*/{kind}/*.json")
    )


def _case_id(case: tuple[str, Path]) -> str:
    return f"{case[0]}/{case[1].stem}"


def _expected_reason(path: Path) -> RejectionReason:
    return RejectionReason(path.stem.split("--", 1)[0])


@pytest.mark.parametrize("case", _corpus("valid"), ids=_case_id)
def test_valid_document_accepted_by_schema_and_model(case: tuple[str, Path]) -> None:
    name, path = case
    raw = path.read_bytes()

    assert _schema_accepts(name, raw)
    assert _model_accepts(name, raw)


@pytest.mark.parametrize("case", _corpus("invalid"), ids=_case_id)
def test_invalid_document_rejected_by_schema_and_model(
    case: tuple[str, Path],
) -> None:
    name, path = case
    raw = path.read_bytes()

    assert not _schema_accepts(name, raw)
    assert not _model_accepts(name, raw)


@pytest.mark.parametrize("case", _corpus("beyond-schema"), ids=_case_id)
def test_beyond_schema_document_accepted_by_schema_only(
    case: tuple[str, Path],
) -> None:
    name, path = case
    raw = path.read_bytes()
    is_checked_by_model = name != "event"

    assert _schema_accepts(name, raw)
    assert _model_accepts(name, raw) is not is_checked_by_model


@pytest.mark.parametrize(
    "case",
    [case for case in _corpus("valid") if case[0] == "event"],
    ids=_case_id,
)
def test_parse_event_returns_model_event_for_valid_document(
    case: tuple[str, Path],
) -> None:
    raw = case[1].read_bytes()

    result = parse_event(raw, now=NOW)

    assert result == Event.model_validate_json(raw, strict=True)


@pytest.mark.parametrize(
    "case",
    [
        case
        for kind in ("invalid", "beyond-schema")
        for case in _corpus(kind)
        if case[0] == "event"
    ],
    ids=_case_id,
)
def test_parse_event_returns_expected_reason_for_bad_document(
    case: tuple[str, Path],
) -> None:
    path = case[1]

    result = parse_event(path.read_bytes(), now=NOW)

    assert isinstance(result, Rejection)
    assert result.reason is _expected_reason(path)


# Dates that the calendar lacks pass the schema's pattern; only a format
# checker or a consumer rejects them, as the time's description states.
_IMPOSSIBLE_DATES = frozenset(
    {
        "invalid_time--april_31",
        "invalid_time--february_29_of_common_year",
        "invalid_time--february_30",
        "invalid_time--year_0000",
    }
)
_INVALID_TIMES = [
    case
    for case in _corpus("invalid")
    if case[0] == "event" and _expected_reason(case[1]) is RejectionReason.INVALID_TIME
]


@pytest.mark.parametrize(
    "case",
    [case for case in _INVALID_TIMES if case[1].stem not in _IMPOSSIBLE_DATES],
    ids=_case_id,
)
def test_invalid_time_rejected_by_schema_without_format_checker(
    case: tuple[str, Path],
) -> None:
    name, path = case

    is_accepted = _schema_accepts(name, path.read_bytes(), formats=None)

    assert not is_accepted


@pytest.mark.parametrize(
    "case",
    [case for case in _INVALID_TIMES if case[1].stem in _IMPOSSIBLE_DATES],
    ids=_case_id,
)
def test_impossible_date_passes_pattern_only(
    case: tuple[str, Path],
) -> None:
    name, path = case
    raw = path.read_bytes()

    result = parse_event(raw, now=NOW)

    assert _schema_accepts(name, raw, formats=None)
    assert isinstance(result, Rejection)
    assert result.reason is RejectionReason.INVALID_TIME


def test_schema_descriptions_name_impossible_dates() -> None:
    schema = _load_schema("event")

    assert "February 30" in schema["description"]
    assert "2019-02-30" in schema["$defs"]["time"]["description"]


@pytest.mark.parametrize(
    ("pointer", "pattern"),
    [
        ("$defs/id", ID_PATTERN),
        ("$defs/optional_id", ID_PATTERN),
        ("$defs/time", TIME_PATTERN),
    ],
)
def test_schema_pattern_is_the_model_pattern(pointer: str, pattern: str) -> None:
    node: Any = _load_schema("event")
    for part in pointer.split("/"):
        node = node[part]

    assert node["pattern"] == pattern


def test_corpus_has_every_schema_and_every_event_reason() -> None:
    event_paths = [
        path
        for kind in ("invalid", "beyond-schema")
        for name, path in _corpus(kind)
        if name == "event"
    ]

    covered = {_expected_reason(path) for path in event_paths}

    assert {name for name, _ in _corpus("valid")} == set(MODELS)
    # processing_failed comes from the stages after validation passed, and
    # unknown_record_type from catalog records only.
    assert covered == set(RejectionReason) - {
        RejectionReason.PROCESSING_FAILED,
        RejectionReason.UNKNOWN_RECORD_TYPE,
    }


_FIELD_SETS = [
    ("event", "", Event),
    ("event", "properties/context", EventContext),
    ("item", "", ItemRecord),
    ("promotion", "", PromotionRecord),
    ("review", "", ReviewRecord),
    ("slate", "", Slate),
    ("slate", "$defs/slate_item", SlateItem),
    ("dead-letter", "", DeadLetter),
    ("training-example", "", TrainingExample),
]


@pytest.mark.parametrize(
    ("name", "pointer", "model"),
    _FIELD_SETS,
    ids=[f"{name}:{model.__name__}" for name, _, model in _FIELD_SETS],
)
def test_schema_properties_match_model_fields(
    name: str, pointer: str, model: type[BaseModel]
) -> None:
    schema = _load_schema(name)
    node = schema
    for part in filter(None, pointer.split("/")):
        node = node[part]

    required = {
        field for field, info in model.model_fields.items() if info.is_required()
    }

    assert set(node["properties"]) == set(model.model_fields)
    assert set(node.get("required", [])) == required
    assert node["additionalProperties"] is False


@pytest.mark.parametrize(
    ("name", "pointer", "enum"),
    [
        ("event", "properties/event_type", EventType),
        ("training-example", "properties/event_type", EventType),
        ("slate", "properties/surface", Surface),
        ("slate", "$defs/slate_item/properties/source", CandidateSource),
        ("slate", "$defs/slate_item/properties/task_probs/propertyNames", EventType),
        ("dead-letter", "properties/reason", RejectionReason),
    ],
)
def test_schema_enum_matches_python_enum(
    name: str, pointer: str, enum: type[EventType]
) -> None:
    node: Any = _load_schema(name)
    for part in pointer.split("/"):
        node = node[part]

    assert node["enum"] == [member.value for member in enum]


def test_every_schema_file_is_valid_draft_2020_12() -> None:
    for name in MODELS:
        jsonschema.Draft202012Validator.check_schema(_load_schema(name))


_LENIENT_FORMS = {
    "space_separator": {"event_time": "2019-10-01 00:00:00Z"},
    "no_seconds": {"event_time": "2019-10-01T00:00Z"},
    "unix_seconds_string": {"event_time": "1569888000"},
    "schema_version_true": {"schema_version": True},
    "integer_quantity_as_float": {"quantity": 1.0},
    "hour_24": {"event_time": "2019-10-01T24:00:00Z"},
    "offset_beyond_a_day": {"event_time": "2019-10-01T00:00:00+25:00"},
    "offset_minute_60": {"event_time": "2019-10-01T00:00:00-01:60"},
    "leap_second_at_any_minute": {"event_time": "2019-10-01T12:30:60+02:00"},
    "long_fraction": {"event_time": "2019-10-01T00:00:00.1234567890Z"},
    "blank_event_id": {"event_id": "   "},
    "event_id_with_outer_spaces": {"event_id": " e1 "},
    "line_separator_user_id": {"user_id": "\u2028"},
}


@pytest.mark.parametrize("overrides", _LENIENT_FORMS.values(), ids=_LENIENT_FORMS)
def test_parse_event_agrees_with_schema_on_edge_forms(
    overrides: dict[str, Any],
) -> None:
    document = {
        "event_id": "e1",
        "event_type": "click",
        "user_id": "u1",
        "item_id": "i1",
        "event_time": "2019-10-01T00:00:00Z",
        "quantity": 1,
        **overrides,
    }
    raw = json.dumps(document).encode()

    is_accepted = isinstance(parse_event(raw, now=NOW), Event)

    assert is_accepted is _schema_accepts("event", raw)


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-5, max_value=20_000)
    | st.floats(allow_nan=False, allow_infinity=False).filter(
        lambda number: not number.is_integer()
    )
    | st.text(max_size=5)
    | st.sampled_from(
        [
            "click",
            "2019-10-01T00:00:00+01:00",
            "2019-13-01T00:00:00Z",
            "2019-10-01T24:00:00Z",
            "2019-10-01T00:00:00+24:00",
            "2019-10-01T00:00:00.5Z",
            " ",
            "\u00a0\u3000",
            "x" * 129,
            "",
        ]
    ),
    lambda children: (
        st.lists(children, max_size=2)
        | st.dictionaries(
            st.sampled_from(["page", "device", "recommendation_id", "x"]),
            children,
            max_size=3,
        )
    ),
    max_leaves=5,
)
_EVENT_FIELDS = [*Event.model_fields, "unknown"]


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(_EVENT_FIELDS), value=_JSON_VALUES)
def test_parse_event_agrees_with_schema_on_mutated_event(
    field: str, value: Any
) -> None:
    document = {
        "event_id": "e1",
        "event_type": "click",
        "user_id": "u1",
        "item_id": "i1",
        "event_time": "2019-10-01T00:00:00Z",
        field: value,
    }
    raw = json.dumps(document).encode()

    is_accepted = isinstance(parse_event(raw, now=NOW), Event)

    assert is_accepted is _schema_accepts("event", raw)


def test_readme_validation_example_resolves_references_offline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repository = Path(__file__).resolve().parents[2]
    readme = (repository / "README.md").read_text()
    section = readme[readme.index("The schemas refer to each other") :]
    start = section.index("```python\n") + len("```python\n")
    example = section[start : section.index("\n```", start)]
    monkeypatch.chdir(repository)

    namespace: dict[str, Any] = {}
    exec(compile(example, "README.md", "exec"), namespace)

    validator = namespace["validator"]
    assert not validator.is_valid({"item_id": "", "updated_at": "yesterday"})


_CATALOG_SCHEMAS = ("item", "promotion", "review")

_CATALOG_DOCUMENTS: dict[str, dict[str, Any]] = {
    "item": {"item_id": "i1", "updated_at": "2019-10-01T00:00:00Z"},
    # The window spans every time the mutations draw, so none ends it early.
    "promotion": {
        "promotion_id": "p1",
        "title": "sale",
        "discount_percent": 10,
        "starts_at": "2000-01-01T00:00:00Z",
        "ends_at": "2100-01-01T00:00:00Z",
        "updated_at": "2019-10-01T00:00:00Z",
    },
    "review": {
        "review_id": "r1",
        "item_id": "i1",
        "rating": 4,
        "created_at": "2019-10-01T00:00:00Z",
        "updated_at": "2019-10-01T00:00:00Z",
    },
}


def _catalog_key(name: str, raw: bytes) -> bytes:
    """Return the key a producer gives the document: its kind and its own id."""
    try:
        document = json.loads(raw)
    except ValueError:
        document = None
    entity_id = document.get(f"{name}_id") if isinstance(document, dict) else None
    return f"{name}:{'unknown' if entity_id is None else entity_id}".encode()


def _consumer_accepts(name: str, raw: bytes) -> bool:
    try:
        parse_catalog_message(_catalog_key(name, raw), raw)
    except CatalogRecordError:
        return False
    return True


@pytest.mark.parametrize(
    "case",
    [
        case
        for kind in ("valid", "invalid", "beyond-schema")
        for case in _corpus(kind)
        if case[0] in _CATALOG_SCHEMAS
    ],
    ids=_case_id,
)
def test_catalog_consumer_accepts_only_valid_corpus(
    case: tuple[str, Path],
) -> None:
    name, path = case

    is_accepted = _consumer_accepts(name, path.read_bytes())

    assert is_accepted is (path.parent.name == "valid")


_CATALOG_EDGE_FORMS: dict[str, tuple[str, dict[str, Any]]] = {
    "item_without_record_type": ("item", {}),
    "promotion_without_record_type": ("promotion", {}),
    "review_without_record_type": ("review", {}),
    "record_type_of_key": ("item", {"record_type": "item"}),
    "unknown_record_type": ("item", {"record_type": "gadget"}),
    "record_type_of_other_kind": ("item", {"record_type": "review"}),
    "record_type_null": ("item", {"record_type": None}),
    "schema_version_true": ("item", {"schema_version": True}),
    "price_as_string": ("item", {"price": "5.0"}),
    "price_as_integer": ("item", {"price": 5}),
    "stock_as_integral_float": ("item", {"stock": 3.0}),
    "is_consumable_as_number": ("item", {"is_consumable": 1}),
    "updated_at_unix_seconds": ("item", {"updated_at": 1569888000}),
    "updated_at_space_separator": ("item", {"updated_at": "2019-10-01 00:00:00Z"}),
    "discount_as_integer": ("promotion", {"discount_percent": 5}),
    "rating_as_integral_float": ("review", {"rating": 4.0}),
    "rating_as_string": ("review", {"rating": "4"}),
}


@pytest.mark.parametrize(
    ("name", "overrides"), _CATALOG_EDGE_FORMS.values(), ids=_CATALOG_EDGE_FORMS
)
def test_catalog_consumer_agrees_with_schema_on_edge_forms(
    name: str, overrides: dict[str, Any]
) -> None:
    raw = json.dumps({**_CATALOG_DOCUMENTS[name], **overrides}).encode()

    is_accepted = _consumer_accepts(name, raw)

    assert is_accepted is _schema_accepts(name, raw)


_CATALOG_FIELDS = [
    (name, field)
    for name, model in (
        ("item", ItemRecord),
        ("promotion", PromotionRecord),
        ("review", ReviewRecord),
    )
    for field in [*model.model_fields, "unknown"]
]


@settings(max_examples=600, deadline=None)
@given(target=st.sampled_from(_CATALOG_FIELDS), value=_JSON_VALUES)
def test_catalog_consumer_agrees_with_schema_on_mutated_record(
    target: tuple[str, str], value: Any
) -> None:
    name, field = target
    raw = json.dumps({**_CATALOG_DOCUMENTS[name], field: value}).encode()

    is_accepted = _consumer_accepts(name, raw)

    assert is_accepted is _schema_accepts(name, raw)
