from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.deadletters import RejectionReason
from schemas.events import Event, EventType
from schemas.validation import MAX_EVENT_BYTES, Rejection, parse_event

NOW = datetime(2019, 10, 2, tzinfo=UTC)

VALID: dict[str, Any] = {
    "schema_version": 1,
    "event_id": "e-1",
    "event_type": "cart_add",
    "user_id": "u-1",
    "item_id": "i-1",
    "event_time": "2019-10-01T12:00:00Z",
    "session_id": "s-1",
    "quantity": 2,
    "price": 35.79,
    "order_id": None,
    "context": {"page": "/p", "device": "mobile", "recommendation_id": "r-1"},
}


def encode(**overrides: Any) -> bytes:
    document = {**VALID, **overrides}
    return json.dumps({k: v for k, v in document.items() if v is not ...}).encode()


def test_parse_event_returns_event_for_valid_document() -> None:
    result = parse_event(encode(), now=NOW)

    assert isinstance(result, Event)
    assert result.event_type is EventType.CART_ADD
    assert result.event_time == datetime(2019, 10, 1, 12, tzinfo=UTC)


def test_parse_event_converts_offset_time_to_utc() -> None:
    result = parse_event(encode(event_time="2019-10-01T14:00:00+02:00"), now=NOW)

    assert isinstance(result, Event)
    assert result.event_time == datetime(2019, 10, 1, 12, tzinfo=UTC)
    assert result.event_time.tzinfo is UTC


CASES = [
    (None, RejectionReason.EMPTY_VALUE, "empty"),
    (b"", RejectionReason.EMPTY_VALUE, "empty"),
    (b'{"event_id": ', RejectionReason.INVALID_JSON, "not valid UTF-8 JSON"),
    (b'{"event_id": "\xff"}', RejectionReason.INVALID_JSON, "JSON"),
    (b"[1, 2]", RejectionReason.NOT_AN_OBJECT, "expected a JSON object"),
    (encode(schema_version=2), RejectionReason.UNSUPPORTED_SCHEMA_VERSION, "1"),
    (encode(user_id=...), RejectionReason.MISSING_FIELD, "'user_id' is missing"),
    (encode(sku="x"), RejectionReason.UNKNOWN_FIELD, "'sku' is not part"),
    (encode(user_id=7), RejectionReason.WRONG_TYPE, "'user_id' has value 7"),
    (encode(quantity="2"), RejectionReason.WRONG_TYPE, "'quantity'"),
    (encode(quantity=True), RejectionReason.WRONG_TYPE, "has value true"),
    (encode(event_time=1569931200), RejectionReason.WRONG_TYPE, "RFC 3339"),
    (encode(event_type="view"), RejectionReason.UNKNOWN_EVENT_TYPE, "'view'"),
    (encode(item_id=""), RejectionReason.INVALID_ID, "1 to 128 characters"),
    (encode(item_id="i" * 129), RejectionReason.ID_TOO_LONG, "129 characters"),
    (encode(event_time="2019-10-01T12:00:00"), RejectionReason.INVALID_TIME, "UTC"),
    (encode(event_time="1999-12-31T23:59:59Z"), RejectionReason.TIME_TOO_OLD, "2000"),
    (
        encode(event_time="9999-12-31T23:59:59-23:59"),
        RejectionReason.INVALID_TIME,
        "years 1 to 9999 in UTC",
    ),
    (
        encode(event_time="0001-01-01T00:00:00+00:01"),
        RejectionReason.INVALID_TIME,
        "years 1 to 9999 in UTC",
    ),
    (encode(price=-1.5), RejectionReason.NEGATIVE_VALUE, "-1.5"),
    (encode(quantity=0), RejectionReason.OUT_OF_RANGE, "1 to 10000"),
    (b" " * MAX_EVENT_BYTES + encode(), RejectionReason.PAYLOAD_TOO_LARGE, "bytes"),
]


@pytest.mark.parametrize(
    ("raw", "reason", "fragment"), CASES, ids=[case[1].value for case in CASES]
)
def test_parse_event_rejects_with_reason_and_actionable_message(
    raw: bytes | None, reason: RejectionReason, fragment: str
) -> None:
    result = parse_event(raw, now=NOW)

    assert isinstance(result, Rejection)
    assert result.reason is reason
    assert fragment in result.message


@pytest.mark.parametrize(
    "escaped",
    [
        b"\\ud800",
        b"\\uDBFFx",
        b"\\ud800\\n",
        b"\\udc00",
        b"\\ud800\\u0041",
        b"\\ud800\\ud800",
    ],
    ids=[
        "high",
        "high_then_letter",
        "high_then_escape",
        "low",
        "high_then_ascii",
        "two_high",
    ],
)
def test_parse_event_names_lone_surrogate_escape(escaped: bytes) -> None:
    raw = encode(user_id="PLACEHOLDER").replace(b"PLACEHOLDER", escaped)

    result = parse_event(raw, now=NOW)

    assert isinstance(result, Rejection)
    assert result.reason is RejectionReason.INVALID_JSON
    assert "invalid \\u escape: lone surrogate at line 1 column " in result.message
    assert "expected \\uD800-\\uDBFF directly followed by \\uDC00-\\uDFFF" in (
        result.message
    )
    assert "hex escape" not in result.message


@pytest.mark.parametrize("as_text", [False, True], ids=["bytes", "text"])
def test_parse_event_names_byte_order_mark(as_text: bool) -> None:
    raw = b"\xef\xbb\xbf" + encode()

    result = parse_event(raw.decode() if as_text else raw, now=NOW)

    assert isinstance(result, Rejection)
    assert result.reason is RejectionReason.INVALID_JSON
    assert "starts with a UTF-8 byte order mark (EF BB BF)" in result.message
    assert "without BOM" in result.message


def test_parse_event_accepts_surrogate_pair_escape() -> None:
    raw = encode(user_id="PLACEHOLDER").replace(b"PLACEHOLDER", b"\\ud83d\\ude00")

    result = parse_event(raw, now=NOW)

    assert isinstance(result, Event)
    assert result.user_id == "\U0001f600"


def _with_repeated_key(raw: bytes, key: bytes, value: bytes) -> bytes:
    # json.dumps cannot write a repeated key, so the bytes are edited.
    return raw[:-1] + b", " + key + b": " + value + b"}"


@pytest.mark.parametrize(
    "raw",
    [
        _with_repeated_key(encode(), b'"user_id"', b'"u-2"'),
        _with_repeated_key(encode(), b'"user_\\u0069d"', b'"u-2"'),
        _with_repeated_key(encode(), b'"user_id" \n', b'"u-2"'),
        encode(context=...)[:-1]
        + b', "context": {"page": "/a", "device": "d", "page": "/b"}}',
    ],
    ids=["top-level", "escaped", "spaced", "nested"],
)
def test_parse_event_rejects_repeated_key(raw: bytes) -> None:
    result = parse_event(raw, now=NOW)

    assert isinstance(result, Rejection)
    assert result.reason is RejectionReason.INVALID_JSON
    assert "appears more than once" in result.message


@pytest.mark.parametrize("page", ["user_id", '"user_id": "u-2"', 'a" : b'])
def test_parse_event_accepts_key_like_value(page: str) -> None:
    result = parse_event(encode(context={"page": page}), now=NOW)

    assert isinstance(result, Event)
    assert result.context is not None
    assert result.context.page == page


def test_parse_event_rejects_time_beyond_skew() -> None:
    raw = encode(event_time="2019-10-02T01:00:01Z")

    result = parse_event(raw, now=NOW)

    assert isinstance(result, Rejection)
    assert result.reason is RejectionReason.TIME_IN_FUTURE
    assert "check the producer's clock" in result.message


def test_parse_event_accepts_time_within_skew() -> None:
    raw = encode(event_time="2019-10-02T01:00:00Z")

    result = parse_event(raw, now=NOW)

    assert isinstance(result, Event)


def test_parse_event_uses_configured_skew() -> None:
    raw = encode(event_time="2019-10-02T00:00:10Z")

    result = parse_event(raw, now=NOW, max_future_skew=timedelta(seconds=5))

    assert isinstance(result, Rejection)
    assert result.reason is RejectionReason.TIME_IN_FUTURE


def test_parse_event_truncates_long_values_in_message() -> None:
    result = parse_event(encode(user_id="u" * 5000), now=NOW)

    assert isinstance(result, Rejection)
    assert len(result.message) < 300
    assert "5000 characters" in result.message


def test_parse_event_prefers_schema_version_over_other_faults() -> None:
    result = parse_event(encode(schema_version=3, user_id=..., sku=1), now=NOW)

    assert isinstance(result, Rejection)
    assert result.reason is RejectionReason.UNSUPPORTED_SCHEMA_VERSION
    assert "more problem" in result.message


def test_parse_event_rejects_deep_nesting_without_raising() -> None:
    raw = b'{"context": ' * 2000 + b"1" + b"}" * 2000

    result = parse_event(raw, now=NOW)

    assert isinstance(result, Rejection)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_parse_event_never_raises_on_random_bytes(raw: bytes) -> None:
    result = parse_event(raw, now=NOW)

    assert isinstance(result, Event | Rejection)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=400, deadline=None)
@given(
    field=st.sampled_from([*VALID, "unknown"]),
    value=JSON_VALUES | st.just(...),
)
def test_parse_event_never_raises_on_mutated_event(field: str, value: Any) -> None:
    raw = encode(**{field: value})

    result = parse_event(raw, now=NOW)

    assert isinstance(result, Event | Rejection)
    if isinstance(result, Rejection):
        assert result.message


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(min_value=0, max_value=400), flip=st.integers(0, 255))
def test_parse_event_never_raises_on_corrupted_bytes(cut: int, flip: int) -> None:
    raw = bytearray(encode())
    raw[cut % len(raw)] = flip

    result = parse_event(bytes(raw), now=NOW)

    assert isinstance(result, Event | Rejection)


@pytest.mark.parametrize(
    "item_id", ["a\x00b", "a\x1fb", "ab\n", "a\x7fb", "a\x85b", "a\x9fb"]
)
def test_id_with_control_character_is_invalid_id(item_id: str) -> None:
    rejection = parse_event(encode(item_id=item_id), now=NOW)

    assert isinstance(rejection, Rejection)
    assert rejection.reason is RejectionReason.INVALID_ID
    assert "no control characters" in rejection.message


@pytest.mark.parametrize(
    "field",
    ["event_id", "user_id", "item_id", "session_id", "order_id"],
)
@pytest.mark.parametrize(
    "blank", ["   ", " ", "\u00a0", "\u3000 \u2003", "\ufeff"], ids=ascii
)
def test_blank_id_is_invalid_id(field: str, blank: str) -> None:
    rejection = parse_event(encode(**{field: blank}), now=NOW)

    assert isinstance(rejection, Rejection)
    assert rejection.reason is RejectionReason.INVALID_ID
    assert "not only whitespace" in rejection.message


def test_blank_recommendation_id_is_invalid_id() -> None:
    context = {**VALID["context"], "recommendation_id": "  "}

    rejection = parse_event(encode(context=context), now=NOW)

    assert isinstance(rejection, Rejection)
    assert rejection.reason is RejectionReason.INVALID_ID
    assert "context.recommendation_id" in rejection.message


@pytest.mark.parametrize("item_id", [" i-1", "i-1 ", "i 1", "\u00a0i-1"], ids=ascii)
def test_padded_id_is_accepted(item_id: str) -> None:
    result = parse_event(encode(item_id=item_id), now=NOW)

    assert isinstance(result, Event)
    assert result.item_id == item_id


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-06-30T23:59:60Z", "2019-06-30T23:59:59.999999+00:00"),
        ("2019-06-30T23:59:60.25Z", "2019-06-30T23:59:59.999999+00:00"),
        ("2019-07-01T01:59:60+02:00", "2019-06-30T23:59:59.999999+00:00"),
    ],
)
def test_leap_second_is_last_microsecond_of_minute(text: str, expected: str) -> None:
    result = parse_event(encode(event_time=text), now=NOW)

    assert isinstance(result, Event)
    assert result.event_time.isoformat() == expected


def _with_literal(field: str, literal: bytes) -> bytes:
    # Python converts no int of over 4300 digits from text, so json.dumps
    # cannot write the huge literal and the bytes are edited.
    return (
        encode(**{field: ...})[:-1] + b', "' + field.encode() + b'": ' + literal + b"}"
    )


@pytest.mark.parametrize(
    ("raw", "reason", "fragment"),
    [
        (
            _with_literal("quantity", b"9" * 5000),
            RejectionReason.INVALID_JSON,
            "number out of range",
        ),
        (_with_literal("price", b"NaN"), RejectionReason.OUT_OF_RANGE, "nan"),
        (_with_literal("user_id", b"NaN"), RejectionReason.WRONG_TYPE, "nan"),
    ],
    ids=["huge_quantity", "nan_price", "nan_user_id"],
)
def test_parse_event_edge_number_reason(
    raw: bytes, reason: RejectionReason, fragment: str
) -> None:
    result = parse_event(raw, now=NOW)

    assert isinstance(result, Rejection)
    assert result.reason is reason
    assert fragment in result.message
