"""Validation of raw ``events`` and ``catalog`` values: a clean record or a rejection.

:func:`parse_event` is the single gate between the wire and the services for
events, and :func:`parse_catalog_record` for catalog records. Neither raises
on input. Every value, however malformed, becomes either a model or a
:class:`Rejection` with one :class:`RejectionReason` per kind of fault and a
message that names the field, the offending value and the expected form. Both
name faults with :func:`schemas.rejections.reject`, so a fault gets one reason
on every topic.

Documents are validated by pydantic in strict JSON mode
(``Event.model_validate_json(raw, strict=True)``). ``benchmarks/bench_validation.py``
measured it close to the speed of ``json.loads`` alone and about three times
faster than a hand-written check of the same rules on ``json.loads`` output. Strict mode
keeps the model in line with ``schemas/json/event.schema.json``: no numbers as
strings, no booleans as numbers, no Unix seconds as ``event_time``. Two checks
need more than one document and therefore live only here: the payload size and
the event time relative to the clock.

A key repeated within one object of an event or a catalog record is rejected
as ``invalid_json``. Section 4 of RFC 8259 notes that parsers differ on such
objects (many keep the last value, others fail or keep every pair), so two
consumers of one message could read two different users or prices from it.

Two edge cases depend on the parser. A number of more than 4300 digits is
rejected as ``invalid_json``, because pydantic-core's parser (like ``json`` in
Python 3.11 and later) reports it as out of range, and section 9 of RFC 8259
lets a parser limit the range of numbers. A ``NaN`` or ``Infinity`` literal
is not JSON, but the parser reads it as a float. The field that contains it
then rejects the document, for example as ``out_of_range`` for a price or
``wrong_type`` for an id, so no document with such a literal is accepted.

Duplicate events are not a validation concern: the feature store drops them
by ``event_id``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from schemas.catalog import RECORD_MODELS, CatalogRecord
from schemas.deadletters import RejectionReason
from schemas.events import Event
from schemas.rejections import TIME_FORM, Rejection, RejectionRules, reject

__all__ = [
    "DEFAULT_MAX_FUTURE_SKEW",
    "MAX_EVENT_BYTES",
    "MIN_EVENT_TIME",
    "Rejection",
    "parse_catalog_record",
    "parse_event",
]

# A real event is a few hundred bytes; 16 KiB leaves room for long ids and
# context while stopping a runaway producer from filling the topic.
MAX_EVENT_BYTES = 16 * 1024

# Earlier times come from zeroed clocks or epoch defaults, not from shoppers.
MIN_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)

# Producer clocks drift; an hour absorbs that but not a wrong time zone or a
# millisecond timestamp read as seconds.
DEFAULT_MAX_FUTURE_SKEW = timedelta(hours=1)

_PRICE_FORM = "a finite number from 0 to 1e9, or null"
_FLAG_FORM = "true or false"
_COUNT_FORM = "an integer of 0 or more"

_EVENT_RULES = RejectionRules(
    document="event",
    expected_forms={
        "schema_version": "the integer 1",
        "event_type": "one of 'click', 'cart_add', 'purchase'",
        "event_time": TIME_FORM,
        "quantity": "an integer from 1 to 10000, or null",
        "price": _PRICE_FORM,
        "context": ("an object with optional 'page', 'device' and 'recommendation_id'"),
        "page": "a string of at most 256 characters, or null",
        "device": "a string of at most 64 characters, or null",
    },
    kind_fields={"event_type": RejectionReason.UNKNOWN_EVENT_TYPE},
    time_fields=frozenset({"event_time"}),
)

_TIME_FIELDS = frozenset({"updated_at", "starts_at", "ends_at", "created_at"})

_RECORD_FORMS = {
    "item": {
        "category_path": "a string of at most 512 characters, or null",
        "brand": "a string of at most 128 characters, or null",
        "price": _PRICE_FORM,
        "stock": f"{_COUNT_FORM}, or null",
        "is_consumable": _FLAG_FORM,
    },
    "promotion": {
        "title": "a string of 1 to 256 characters",
        "discount_percent": "a number above 0 and at most 100",
        "category_ids": "a list of at most 256 ids",
        "brands": "a list of at most 256 strings of at most 128 characters",
        "item_ids": "a list of at most 1024 ids",
        "is_generated": _FLAG_FORM,
    },
    "review": {
        "rating": "an integer from 1 to 5",
        "helpful_votes": _COUNT_FORM,
        "unhelpful_votes": _COUNT_FORM,
        "title": "a string of at most 256 characters, or null",
        "body_length": _COUNT_FORM,
        "is_generated": _FLAG_FORM,
    },
}

_RECORD_RULES = {
    kind: RejectionRules(
        document=f"{kind} record",
        expected_forms={
            "schema_version": "the integer 1",
            "record_type": f"{kind!r}, the kind that the key names, or no record_type",
            **{name: TIME_FORM for name in _TIME_FIELDS},
            **forms,
        },
        kind_fields={"record_type": RejectionReason.UNKNOWN_RECORD_TYPE},
        time_fields=_TIME_FIELDS,
    )
    for kind, forms in _RECORD_FORMS.items()
}

# A key ends with its closing quote, optional whitespace and a colon. Inside a
# string a quote is escaped, so such bytes there are rare and only cost a
# second parse.
_SPACED_KEY_END = re.compile(rb'"[ \t\n\r]+:')


def parse_event(
    raw: bytes | None,
    *,
    now: datetime | None = None,
    max_future_skew: timedelta = DEFAULT_MAX_FUTURE_SKEW,
) -> Event | Rejection:
    """Validate one raw ``events`` message value.

    Args:
        raw: the message value as read from Kafka; None for a tombstone.
        now: the current time, tz-aware; defaults to the wall clock. Tests and
            replays inject it.
        max_future_skew: how far past ``now`` an ``event_time`` may lie.

    Returns:
        The validated event, with ``event_time`` in UTC, or a Rejection. The
        function never raises.

    Examples:
        >>> from datetime import UTC, datetime
        >>> raw = (b'{"event_id": "e1", "event_type": "click", "user_id": "u1",'
        ...        b' "item_id": "i1", "event_time": "2019-10-01T00:00:00Z"}')
        >>> parse_event(raw, now=datetime(2019, 10, 2, tzinfo=UTC)).item_id
        'i1'
        >>> parse_event(b"{", now=datetime(2019, 10, 2, tzinfo=UTC)).reason
        <RejectionReason.INVALID_JSON: 'invalid_json'>
    """
    if not raw:
        return Rejection(
            RejectionReason.EMPTY_VALUE,
            "message value is empty; expected one JSON object per message",
        )
    if len(raw) > MAX_EVENT_BYTES:
        return Rejection(
            RejectionReason.PAYLOAD_TOO_LARGE,
            f"message value is {len(raw)} bytes; expected at most "
            f"{MAX_EVENT_BYTES} bytes",
        )

    try:
        event = Event.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        return reject(exc, _EVENT_RULES)

    keys = len(event.model_fields_set)
    if event.context is not None:
        keys += len(event.context.model_fields_set)
    repeated = _reject_repeated_key(raw, keys)
    if repeated is not None:
        return repeated
    return _check_time(event, now, max_future_skew)


def _reject_repeated_key(raw: bytes, keys: int) -> Rejection | None:
    """Reject a valid document that repeats a key within one object.

    Args:
        raw: the document that the model accepted.
        keys: how many keys the model read, summed over its objects. A count
            below the document's own only costs a second parse.

    Returns:
        An ``invalid_json`` Rejection naming the first repeated key, or None.
    """
    # The model records each key it read once. When the bytes hold no more key
    # ends than that, no key is repeated. More key ends may also come from a
    # quote and colon inside a string, so the document is then parsed again.
    if raw.count(b'":') <= keys and _SPACED_KEY_END.search(raw) is None:
        return None
    repeated: list[str] = []

    def collect(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                repeated.append(key)
            seen.add(key)
        return dict(pairs)

    try:
        json.loads(raw, object_pairs_hook=collect)
    except ValueError:
        # pydantic's parser accepted what json refuses; keep its reading.
        return None
    if not repeated:
        return None
    return Rejection(
        RejectionReason.INVALID_JSON,
        f"key {repeated[0]!r} appears more than once in one object; expected "
        "each key once, because readers disagree on which value counts",
    )


def _check_time(
    event: Event, now: datetime | None, max_future_skew: timedelta
) -> Event | Rejection:
    event_time = event.event_time
    if event_time < MIN_EVENT_TIME:
        return Rejection(
            RejectionReason.TIME_TOO_OLD,
            f"event {event.event_id!r} has event_time={event_time.isoformat()!r}; "
            f"expected {MIN_EVENT_TIME.isoformat()} or later",
        )
    latest = (now if now is not None else datetime.now(UTC)) + max_future_skew
    if event_time > latest:
        return Rejection(
            RejectionReason.TIME_IN_FUTURE,
            f"event {event.event_id!r} has event_time={event_time.isoformat()!r}; "
            f"expected no later than {latest.isoformat()} (the clock plus "
            f"{max_future_skew.total_seconds():.0f} s); check the producer's clock "
            "and time zone",
        )
    return event


def parse_catalog_record(kind: str, raw: bytes | str) -> CatalogRecord | Rejection:
    """Validate one ``catalog`` message value as the record that its key names.

    The key's kind picks the model, so a record without ``record_type`` is of
    that kind, as the JSON Schemas allow. Records are read in strict JSON mode,
    as events are, so no numbers as strings and no Unix seconds as times. A
    key repeated within the record is rejected as ``invalid_json``, as in an
    event. A tombstone (a null value) holds no record and is left to the
    caller.

    Args:
        kind: the kind that the message key names: ``item``, ``promotion`` or
            ``review``.
        raw: the message value.

    Returns:
        The validated record, or a Rejection with the reason and message of
        its leading fault.

    Raises:
        ValueError: ``kind`` is not a catalog kind.
    """
    model = RECORD_MODELS.get(kind)
    if model is None:
        raise ValueError(
            f"catalog kind {kind!r} is unknown; expected one of "
            f"{', '.join(RECORD_MODELS)}"
        )
    if not raw:
        return Rejection(
            RejectionReason.EMPTY_VALUE,
            "message value is empty; expected a catalog record, or null to "
            "delete the entity",
        )
    try:
        record = model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        other = _other_record_type(exc, kind)
        if other is None:
            return reject(exc, _RECORD_RULES[kind])
        return Rejection(
            RejectionReason.INVALID_ID,
            f"the key names the kind {kind!r}, but record_type is {other!r}; "
            f"expected record_type {kind!r} or none, or the key '{other}:<id>'",
        )

    # A valid record is one object whose keys are the fields the model read,
    # because its fields contain scalars and lists of strings. A nested object
    # would add key ends beyond that count: a second parse, never a missed key.
    data = raw.encode() if isinstance(raw, str) else raw
    repeated = _reject_repeated_key(data, len(record.model_fields_set))
    return record if repeated is None else repeated


def _other_record_type(exc: ValidationError, kind: str) -> str | None:
    """Return the catalog kind that ``record_type`` names instead of ``kind``."""
    for error in exc.errors():
        value = error["input"]
        if error["loc"] == ("record_type",) and isinstance(value, str):
            return value if value in RECORD_MODELS and value != kind else None
    return None
