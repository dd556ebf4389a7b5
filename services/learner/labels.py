"""Delayed labels in Redis: pending examples, their deadlines and the watermark.

A trigger event (a click for the cart-add task, a cart add for the purchase
task) opens a *pending example* with the features the pair had just before the
event and a deadline of ``event_time + horizon``. The outcome event (a cart add,
a purchase) of the same user and item at or before the deadline resolves it as
a positive. Once the partition's watermark, the maximum event time seen in
that partition, passes ``deadline + allowed_lateness``, the example resolves
as a negative.

Keys are sharded by Kafka partition and share the hash tag ``{lp<partition>}``
so one Lua script can update them atomically (also on Redis Cluster)::

    <prefix>:learn:{lp3}:seen               zset  event_id -> event time
    <prefix>:learn:{lp3}:watermark          string, Unix seconds
    <prefix>:learn:{lp3}:<task>:pending     zset  member -> deadline
    <prefix>:learn:{lp3}:<task>:examples    hash  member -> example JSON
    <prefix>:learn:{lp3}:<task>:pairs       hash  [user, item] -> members JSON

A member is the JSON ``[user_id, item_id, event_id]`` of the trigger event.

Why per partition: events are keyed by user, so a user's click and cart add
always land in the same partition, and a consumer group gives each partition to
one instance at a time. Each instance therefore resolves only the examples of
its own partitions, and because resolution removes the example in the same
script that returns it, even two instances briefly sharing a partition during
a rebalance never resolve the same example twice. The watermark is per
partition because a partition's events arrive in order while partitions drift
apart. The cost is that a partition that stops receiving events stops
resolving negatives until its next event.

Idempotence: the script records every event id it applies in ``seen`` in the
same atomic step as the pending-example changes, and skips ids already there,
so a batch replayed after a crash changes nothing and returns no event twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from schemas.events import Event, EventType
from services.learner.examples import decode_example, encode_example

__all__ = ["LabelTask", "PendingLabelStore", "ResolvedExample", "StoreOutcome"]


@dataclass(frozen=True)
class LabelTask:
    """A conversion step learned from delayed labels.

    Attributes:
        name: the outcome event type, used as task and metric label.
        trigger: the event type that opens a pending example.
        horizon_seconds: how long after the trigger the outcome still counts.
    """

    name: str
    trigger: EventType
    horizon_seconds: float


@dataclass(frozen=True)
class ResolvedExample:
    """A pending example whose label is now known.

    Attributes:
        task: the task's name.
        label: True when the outcome arrived within the horizon.
        event_id: the trigger event.
        user_id: the trigger's user.
        item_id: the trigger's item.
        event_time: the trigger's event time, Unix seconds.
        features: the pair's features just before the trigger.
    """

    task: str
    label: bool
    event_id: str
    user_id: str
    item_id: str
    event_time: float
    features: dict[str, float]


@dataclass(frozen=True)
class StoreOutcome:
    """Changes made by one partition's batch.

    Attributes:
        fresh_event_ids: ids applied now for the first time, in batch order.
        resolved: examples resolved by this batch, positives first.
        watermark: the partition's watermark after the batch, Unix seconds.
        pending_dropped: triggers not recorded because their pair already had
            ``max_pending_per_pair`` pending examples.
        undecodable: resolved examples left out because their stored features
            use another feature layout (written before a feature change).
        pending_evicted: pending examples dropped unlearned because their task
            had more than ``max_pending_per_task`` in the partition.
        pending: examples still pending in the partition after the batch, by
            task.
    """

    fresh_event_ids: list[str]
    resolved: list[ResolvedExample]
    watermark: float
    pending_dropped: int
    undecodable: int = 0
    pending_evicted: int = 0
    pending: dict[str, int] = field(default_factory=dict)


_APPLY_SCRIPT = """
local seen_key, watermark_key = KEYS[1], KEYS[2]
local events = cjson.decode(ARGV[1])
local tasks = cjson.decode(ARGV[2])
local settings = cjson.decode(ARGV[3])

local watermark = tonumber(redis.call('GET', watermark_key) or '-1e18')
-- out[1] is the JSON summary, out[2..] the payloads of the resolved examples,
-- in the order of summary.labels.
local fresh, labels, dropped, evicted, out = {}, {}, 0, 0, {''}

local function drop_member(t, member)
  local pair = cjson.encode({cjson.decode(member)[1], cjson.decode(member)[2]})
  local listed = redis.call('HGET', KEYS[t.base + 2], pair)
  if listed then
    local kept = {}
    for _, other in ipairs(cjson.decode(listed)) do
      if other ~= member then kept[#kept + 1] = other end
    end
    if #kept == 0 then redis.call('HDEL', KEYS[t.base + 2], pair)
    else redis.call('HSET', KEYS[t.base + 2], pair, cjson.encode(kept)) end
  end
  redis.call('ZREM', KEYS[t.base], member)
  redis.call('HDEL', KEYS[t.base + 1], member)
end

for _, ev in ipairs(events) do
  -- ZADD NX adds the id and returns 1 only when it was not there yet.
  if redis.call('ZADD', seen_key, 'NX', ev.t, ev.id) == 1 then
    fresh[#fresh + 1] = ev.id
    if ev.t > watermark then watermark = ev.t end
    local pair = cjson.encode({ev.u, ev.i})
    for _, t in ipairs(tasks) do
      -- LIMITATION(L-34): an outcome only resolves triggers already pending,
      -- so a click that arrives after its own cart add resolves negative.
      if ev.type == t.outcome then
        local listed = redis.call('HGET', KEYS[t.base + 2], pair)
        if listed then
          for _, member in ipairs(cjson.decode(listed)) do
            local deadline = tonumber(redis.call('ZSCORE', KEYS[t.base], member))
            if deadline and ev.t <= deadline then
              labels[#labels + 1] = {t.name, 1}
              out[#out + 1] = redis.call('HGET', KEYS[t.base + 1], member)
              drop_member(t, member)
            end
          end
        end
      end
      if ev.type == t.trigger then
        local listed = redis.call('HGET', KEYS[t.base + 2], pair)
        local members = listed and cjson.decode(listed) or {}
        if #members >= settings.max_pending_per_pair then
          dropped = dropped + 1
        else
          local member = cjson.encode({ev.u, ev.i, ev.id})
          members[#members + 1] = member
          redis.call('ZADD', KEYS[t.base], ev.t + t.horizon, member)
          redis.call('HSET', KEYS[t.base + 1], member, ARGV[ev.x])
          redis.call('HSET', KEYS[t.base + 2], pair, cjson.encode(members))
        end
      end
    end
  end
end

-- Past the cap, the examples closest to their deadline are dropped unlearned,
-- so Redis memory stays bounded when triggers outpace the horizon.
for _, t in ipairs(tasks) do
  local excess = redis.call('ZCARD', KEYS[t.base]) - settings.max_pending
  if excess > 0 then
    for _, member in ipairs(redis.call('ZRANGE', KEYS[t.base], 0, excess - 1)) do
      drop_member(t, member)
    end
    evicted = evicted + excess
  end
end

-- Each task first takes an equal share of what the budget has left, so a long
-- backlog of one task does not starve the others. What a task leaves unused
-- passes to the tasks after it, and what is still left at the end goes back
-- to the tasks that filled their share, so the whole budget is used.
-- LIMITATION(L-30): the watermark moves only with this partition's events,
-- so a partition that goes quiet resolves no negatives until it wakes up.
local cutoff = watermark - settings.lateness
local budget = settings.max_resolutions

local function resolve_negatives(t, limit)
  local expired = redis.call('ZRANGEBYSCORE', KEYS[t.base], '-inf',
                             '(' .. cutoff, 'LIMIT', 0, limit)
  for _, member in ipairs(expired) do
    labels[#labels + 1] = {t.name, 0}
    out[#out + 1] = redis.call('HGET', KEYS[t.base + 1], member)
    drop_member(t, member)
  end
  budget = budget - #expired
  return #expired
end

local filled = {}
for index, t in ipairs(tasks) do
  local share = math.ceil(budget / (#tasks - index + 1))
  filled[index] = share > 0 and resolve_negatives(t, share) == share
end
for index, t in ipairs(tasks) do
  if budget > 0 and filled[index] then resolve_negatives(t, budget) end
  for offset = 0, 2 do
    redis.call('EXPIRE', KEYS[t.base + offset], settings.key_ttl)
  end
end

redis.call('SET', watermark_key, tostring(watermark), 'EX', settings.key_ttl)
redis.call('ZREMRANGEBYSCORE', seen_key, '-inf', '(' .. (watermark - settings.dedupe))
redis.call('EXPIRE', seen_key, settings.key_ttl)
local pending = {}
for _, t in ipairs(tasks) do pending[t.name] = redis.call('ZCARD', KEYS[t.base]) end
out[1] = cjson.encode({fresh = fresh, labels = labels, watermark = watermark,
                      dropped = dropped, evicted = evicted, pending = pending})
return out
"""


class PendingLabelStore:
    """Pending examples of every conversion task, kept in Redis.

    Args:
        client: Redis connection (``decode_responses`` off or on).
        key_prefix: the deployment's key prefix.
        tasks: the conversion steps to track.
        allowed_lateness_seconds: how far behind the watermark an outcome may
            arrive and still turn a pending example positive.
        dedupe_horizon_seconds: how long applied event ids are remembered; a
            replay of older events is applied again.
        max_pending_per_pair: cap of pending examples per (user, item, task);
            further triggers of a pair are dropped and counted.
        max_pending_per_task: cap of pending examples per task and partition,
            which bounds Redis memory. Past it, the examples closest to their
            deadline are dropped unlearned and counted.
        max_resolutions_per_batch: cap of negatives resolved per call, so one
            script does not block Redis for long after a pause. The next
            calls resolve the rest.
        max_resolutions_per_event: cap of negatives resolved per event of the
            call. When the watermark jumps (a quiet partition wakes up, or
            event time skips ahead), every pending example expires at once,
            and learning them all in one batch would hold that batch's slates
            for seconds. Each event opens at most one pending example, so any
            cap above 1 still drains a backlog faster than it grows.
    """

    def __init__(
        self,
        client: redis.Redis,
        key_prefix: str,
        tasks: Sequence[LabelTask],
        allowed_lateness_seconds: float = 60.0,
        dedupe_horizon_seconds: float = 3600.0,
        max_pending_per_pair: int = 32,
        max_pending_per_task: int = 100_000,
        max_resolutions_per_batch: int = 5000,
        max_resolutions_per_event: int = 4,
    ) -> None:
        self._client = client
        self._prefix = key_prefix
        self.tasks = tuple(tasks)
        longest = max((task.horizon_seconds for task in self.tasks), default=0.0)
        self._settings = {
            "lateness": allowed_lateness_seconds,
            "dedupe": dedupe_horizon_seconds,
            "max_pending_per_pair": max_pending_per_pair,
            "max_pending": max_pending_per_task,
            "max_resolutions": max_resolutions_per_batch,
            # Keys of a partition that receives no events expire after the longest
            # horizon plus a day, so an abandoned partition leaves no garbage.
            "key_ttl": int(max(longest, dedupe_horizon_seconds) + 86_400),
        }
        self._max_resolutions_per_event = max_resolutions_per_event
        self._script = client.register_script(_APPLY_SCRIPT)
        self._triggers = {task.trigger for task in self.tasks}

    def keys(self, partition: int) -> list[str]:
        """Return the Redis keys of one partition, in the script's KEYS order."""
        shard = f"{self._prefix}:learn:{{lp{partition}}}"
        keys = [f"{shard}:seen", f"{shard}:watermark"]
        for task in self.tasks:
            keys += [
                f"{shard}:{task.name}:pending",
                f"{shard}:{task.name}:examples",
                f"{shard}:{task.name}:pairs",
            ]
        return keys

    def apply(
        self,
        partition: int,
        events: Sequence[tuple[Event, Mapping[str, float]]],
    ) -> StoreOutcome:
        """Record one partition's events and return what they resolved.

        Args:
            partition: the ``events`` partition all events came from.
            events: each event with the pair's features just before it, in
                partition order.
        """
        documents = []
        payloads = []
        for event, features in events:
            # Only triggers need their features stored; ARGV[4] is the first payload.
            index = 0
            if event.event_type in self._triggers:
                payloads.append(encode_example(event, features))
                index = 3 + len(payloads)
            documents.append(_event_document(event, index))
        task_documents = [
            {
                "name": task.name,
                "trigger": task.trigger.value,
                "outcome": task.name,
                "horizon": task.horizon_seconds,
                "base": 3 + 3 * index,
            }
            for index, task in enumerate(self.tasks)
        ]
        raw = self._script(
            keys=self.keys(partition),
            args=[
                json.dumps(documents) if documents else "[]",
                json.dumps(task_documents),
                json.dumps(self._call_settings(len(events))),
                *payloads,
            ],
        )
        return _parse_outcome(raw)

    def _call_settings(self, event_count: int) -> dict[str, Any]:
        budget = min(
            self._settings["max_resolutions"],
            self._max_resolutions_per_event * event_count,
        )
        return {**self._settings, "max_resolutions": budget}

    def pending_count(self, partition: int) -> dict[str, int]:
        """Return the number of pending examples per task in one partition."""
        keys = self.keys(partition)
        pipe = self._client.pipeline(transaction=False)
        for index in range(len(self.tasks)):
            pipe.zcard(keys[2 + 3 * index])
        counts = pipe.execute()
        return {
            task.name: int(count)
            for task, count in zip(self.tasks, counts, strict=True)
        }


def _event_document(event: Event, payload_index: int) -> dict[str, Any]:
    return {
        "id": event.event_id,
        "type": event.event_type.value,
        "u": event.user_id,
        "i": event.item_id,
        "t": event.event_timestamp,
        "x": payload_index,
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _parse_outcome(raw: Sequence[bytes | str]) -> StoreOutcome:
    summary = json.loads(_text(raw[0]))
    resolved = []
    undecodable = 0
    labels = summary["labels"] or []
    for (task, label), payload in zip(labels, raw[1:], strict=True):
        example = decode_example(_text(payload))
        if example is None:
            undecodable += 1
            continue
        event_id, user_id, item_id, event_time, features = example
        resolved.append(
            ResolvedExample(
                task, bool(label), event_id, user_id, item_id, event_time, features
            )
        )
    fresh = summary["fresh"]
    # cjson encodes an empty Lua table as {}, not [].
    return StoreOutcome(
        fresh_event_ids=list(fresh) if isinstance(fresh, list) else [],
        resolved=resolved,
        watermark=float(summary["watermark"]),
        pending_dropped=int(summary["dropped"]),
        undecodable=undecodable,
        pending_evicted=int(summary.get("evicted", 0)),
        pending={task: int(count) for task, count in summary["pending"].items()},
    )
