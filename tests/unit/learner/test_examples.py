from __future__ import annotations

import json
from datetime import UTC, datetime

from schemas.events import Event, EventType
from services.learner.examples import decode_example, encode_example

EVENT = Event(
    event_id="e1",
    event_type=EventType.CLICK,
    user_id="u1",
    item_id="i1",
    event_time=datetime(2026, 3, 2, 12, 0, tzinfo=UTC),
)


def test_decode_example_returns_known_and_extra_features() -> None:
    features = {"user_click_count_1h": 3.0, "item_price": 19.5, "custom_score": 0.25}

    decoded = decode_example(encode_example(EVENT, features))

    assert decoded == ("e1", "u1", "i1", EVENT.event_timestamp, features)


def test_decode_example_leaves_out_missing_features() -> None:
    decoded = decode_example(encode_example(EVENT, {"item_price": 2.0}))

    assert decoded is not None
    assert decoded[4] == {"item_price": 2.0}


def test_decode_example_returns_none_for_other_layout() -> None:
    header, _, vector = encode_example(EVENT, {"item_price": 2.0}).partition("\n")
    fields = json.loads(header)
    fields[0] = "00000000"

    assert decode_example(json.dumps(fields) + "\n" + vector) is None


def test_encode_example_stays_compact() -> None:
    features = {f"user_click_count_{w}": 1.0 for w in ("1h", "24h", "7d")}

    payload = encode_example(EVENT, features)

    assert len(payload) < 400
