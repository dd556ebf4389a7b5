"""Progress of a replay, counted in slates once per trigger event."""

from __future__ import annotations

import json

__all__ = ["TriggerTally"]


class TriggerTally:
    """The distinct trigger events among the slates read so far.

    A hot-path instance that loses its partitions (a missed group heartbeat on
    a busy machine, a restart) processes the events after its last commit
    again and publishes their slates a second time. Counting messages would
    then reach the number of replayed events before every event has a slate,
    and the evaluation would start while slates are still being published.
    """

    def __init__(self) -> None:
        self._trigger_event_ids: set[str] = set()

    def __len__(self) -> int:
        return len(self._trigger_event_ids)

    def add(self, value: bytes | None) -> bool:
        """Record one slate message's JSON value.

        Returns:
            True when its trigger event had no slate before.

        Raises:
            ValueError: the value is not a JSON object with a string
                ``trigger_event_id``.
        """
        try:
            trigger_event_id = json.loads(value or b"null")["trigger_event_id"]
        except (TypeError, KeyError, json.JSONDecodeError) as exc:
            shown = value[:80] if value else value
            raise ValueError(
                f"invalid slate value {shown!r}: missing trigger_event_id; "
                "expected a JSON slate from the hot path"
            ) from exc
        if not isinstance(trigger_event_id, str):
            raise ValueError(
                f"invalid slate trigger_event_id={trigger_event_id!r}; "
                "expected a string"
            )
        if trigger_event_id in self._trigger_event_ids:
            return False
        self._trigger_event_ids.add(trigger_event_id)
        return True
