"""The catalog marker: which catalog partitions Redis contains in full.

The catalog consumer resumes at its committed offsets, which are valid only
while Redis still contains the records stored before them. Each partition has an
entry in the hash ``FeatureKeys.catalog_loaded()``, under ``<topic>:<partition>``:

- ``loading`` from the moment the consumer seeks the partition to its start,
- ``loaded`` once it has read the partition to its end and committed.

The hash has no TTL, so it disappears only with the data: a FLUSHALL, a
restart without persistence or a failover to an empty replica. A partition
without a ``loaded`` entry is read again from the start. Finishing a partition
turns ``loading`` into ``loaded`` only while the ``loading`` entry is still
there, so data lost in the middle of a re-read is noticed too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from enum import StrEnum

import redis

from schemas.features import FeatureKeys

__all__ = ["CatalogMarker", "PartitionState"]

# KEYS[1] the marker hash. ARGV[1] the entry to store, ARGV[2..] the fields.
# Overwrites each field that still exists and returns those that vanished.
_FINISH_SCRIPT = """
local vanished = {}
for i = 2, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[1])
  else
    table.insert(vanished, ARGV[i])
  end
end
return vanished
"""


class PartitionState(StrEnum):
    """How much of a catalog partition Redis contains."""

    LOADING = "loading"
    LOADED = "loaded"


class CatalogMarker:
    """Reads and writes the per-partition entries of the catalog marker.

    Args:
        client: a Redis client.
        key_prefix: the prefix of every key.
        topic: the catalog topic.
        consumer_group: the catalog consumers' group, stored in each entry
            for operators who read the hash.
        clock: seconds since the epoch, stored in each entry as its time.
    """

    def __init__(
        self,
        client: redis.Redis,
        key_prefix: str,
        topic: str,
        consumer_group: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = FeatureKeys(key_prefix).catalog_loaded()
        self.topic = topic
        self.consumer_group = consumer_group
        self._client = client
        self._clock = clock
        self._finish_script = client.register_script(_FINISH_SCRIPT)

    def states(self, partitions: Collection[int]) -> dict[int, PartitionState]:
        """Return the state of each partition that has a readable entry."""
        ordered = sorted(partitions)
        if not ordered:
            return {}
        values = self._client.hmget(self.key, [self._field(p) for p in ordered])
        states = {}
        for partition, value in zip(ordered, values, strict=True):
            state = _parse_state(value)
            if state is not None:
                states[partition] = state
        return states

    def start(self, partitions: Collection[int]) -> None:
        """Mark partitions as being read again from their start."""
        entry = self._entry(PartitionState.LOADING)
        self._client.hset(
            self.key, mapping={self._field(p): entry for p in sorted(partitions)}
        )

    def finish(self, partitions: Collection[int]) -> set[int]:
        """Mark partitions as loaded, unless their entry has vanished.

        Returns:
            The partitions whose entry had vanished. Redis lost data while
            they were read, so they must be read from their start again.
        """
        fields = {self._field(p): p for p in sorted(partitions)}
        if not fields:
            return set()
        vanished = self._finish_script(
            keys=[self.key], args=[self._entry(PartitionState.LOADED), *fields]
        )
        return {fields[_text(field)] for field in vanished}

    def _field(self, partition: int) -> str:
        return f"{self.topic}:{partition}"

    def _entry(self, state: PartitionState) -> str:
        set_at = datetime.fromtimestamp(self._clock(), UTC)
        return json.dumps(
            {
                "state": state.value,
                "consumer_group": self.consumer_group,
                "set_at": set_at.isoformat(timespec="seconds"),
            }
        )


def _parse_state(value: bytes | str | None) -> PartitionState | None:
    """Return the state in an entry, or None for a missing or unreadable one."""
    if value is None:
        return None
    try:
        entry = json.loads(value)
        return PartitionState(entry["state"])
    except (ValueError, TypeError, KeyError):
        return None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
