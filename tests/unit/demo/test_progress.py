from __future__ import annotations

import json

import pytest

from services.demo.progress import TriggerTally


def _slate_value(trigger_event_id: object) -> bytes:
    return json.dumps({"trigger_event_id": trigger_event_id, "items": []}).encode()


def test_trigger_tally_counts_each_trigger_once() -> None:
    tally = TriggerTally()

    added = [tally.add(_slate_value(event_id)) for event_id in ("e1", "e2", "e1")]

    assert added == [True, True, False]
    assert len(tally) == 2


def test_trigger_tally_rejects_value_without_trigger() -> None:
    tally = TriggerTally()

    with pytest.raises(ValueError, match="missing trigger_event_id"):
        tally.add(b'{"items": []}')


def test_trigger_tally_rejects_empty_value() -> None:
    tally = TriggerTally()

    with pytest.raises(ValueError, match="missing trigger_event_id"):
        tally.add(None)


def test_trigger_tally_rejects_non_string_trigger() -> None:
    tally = TriggerTally()

    with pytest.raises(ValueError, match="expected a string"):
        tally.add(_slate_value(7))
