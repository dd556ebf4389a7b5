"""The catalog marker: which catalog partitions Redis contains in full.

The catalog consumer resumes at its committed offsets, which are valid only
while Redis still contains the records stored before them. Each partition has an
entry in the hash ``FeatureKeys.catalog_loaded()``, under ``<topic>:<partition>``:

- ``loading`` from the moment the consumer seeks the partition to its start,
- ``loaded`` once it has read the partition to its end and committed.

A ``loading`` entry also records the consumer group's committed offset when
the read began, or null for a first read. Invalid records below it were
dead-lettered by an earlier read, so a consumer that takes over an unfinished
read does not dead-letter them again.

The hash has no TTL, so it disappears only with the data: a FLUSHALL, a
restart without persistence or a failover to an empty replica. A partition
without a ``loaded`` entry is read again from the start. Finishing a partition
turns ``loading`` into ``loaded`` only while the ``loading`` entry is still
there, so data lost in the middle of a re-read is noticed too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import redis

from schemas.features import FeatureKeys

__all__ = ["CatalogMarker", "PartitionEntry", "PartitionState"]

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


@dataclass(frozen=True)
class PartitionEntry:
    """A catalog partition's entry in the marker.

    Attributes:
        state: how much of the partition Redis contains.
        committed_offset: the consumer group's committed offset when the read
            from the start began, or None when the group had none. Only
            ``loading`` entries have one.
    """

    state: PartitionState
    committed_offset: int | None = None


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

    def entries(self, partitions: Collection[int]) -> dict[int, PartitionEntry]:
        """Return the entry of each partition that has a readable one."""
        ordered = sorted(partitions)
        if not ordered:
            return {}
        values = self._client.hmget(self.key, [self._field(p) for p in ordered])
        entries = {}
        for partition, value in zip(ordered, values, strict=True):
            entry = _parse_entry(value)
            if entry is not None:
                entries[partition] = entry
        return entries

    def start(self, committed_offsets: Mapping[int, int | None]) -> None:
        """Mark partitions as being read from their start.

        Args:
            committed_offsets: the consumer group's committed offset of each
                partition when its read began, None where it has none.
        """
        self._client.hset(
            self.key,
            mapping={
                self._field(p): self._entry(PartitionState.LOADING, offset)
                for p, offset in sorted(committed_offsets.items())
            },
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

    def _entry(self, state: PartitionState, committed_offset: int | None = None) -> str:
        set_at = datetime.fromtimestamp(self._clock(), UTC)
        entry: dict[str, str | int | None] = {
            "state": state.value,
            "consumer_group": self.consumer_group,
            "set_at": set_at.isoformat(timespec="seconds"),
        }
        if state is PartitionState.LOADING:
            entry["committed_offset"] = committed_offset
        return json.dumps(entry)


def _parse_entry(value: bytes | str | None) -> PartitionEntry | None:
    """Return the entry in a hash value, or None for a missing or unreadable one.

    An entry written before entries recorded the committed offset has None.
    """
    if value is None:
        return None
    try:
        entry = json.loads(value)
        state = PartitionState(entry["state"])
    except (ValueError, TypeError, KeyError):
        return None
    offset = entry.get("committed_offset")
    is_offset = isinstance(offset, int) and not isinstance(offset, bool)
    return PartitionEntry(state, offset if is_offset and offset >= 0 else None)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
