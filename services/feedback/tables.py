"""Windowed outcome tables of the feedback app, kept in Redis.

The join of slates with the user's later events, and the tumbling-window counts
it produces, live in Redis rather than in Faust tables. Faust restores a table
by reading its changelog topic up to the end offset the broker reports. Some
brokers (Tansu 0.6 among them) report an end offset that is too low, so a
restarted worker would start from partial counts. Faust's at-least-once
processing would also count a message twice when it is redelivered after a
crash. Here each slate and event is applied by one Lua script that records its
id and updates the counts atomically, so a redelivered message changes nothing
and a restarted worker continues from the stored counts.

Attribution: a slate is credited with an outcome (``click``, ``cart_add`` or
``purchase``) when the same user's event of that type follows the slate's
trigger event within the attribution window (event time) and is on one of the
slate's items, or names the slate in ``context.recommendation_id``. A ``hit``
is the user's very next event landing on one of the slate's items. Every slate
counts each outcome at most once, and an event may credit several slates.
Counts are bucketed by the tumbling window that contains the slate's
``generated_at``, so the numerator and denominator of a rate describe the same
slates.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import redis.asyncio

from schemas.events import Event
from schemas.recommendations import Slate
from services.feedback.settings import FeedbackSettings

__all__ = [
    "Applied",
    "Credit",
    "FeedbackTables",
    "Outcome",
    "as_text",
    "feedback_tag",
    "window_index_key",
    "window_key",
]

logger = logging.getLogger(__name__)


class Outcome(StrEnum):
    """Outcome counted per slate."""

    IMPRESSION = "impression"
    HIT = "hit"
    CLICK = "click"
    CART_ADD = "cart_add"
    PURCHASE = "purchase"


@dataclass(frozen=True)
class Applied:
    """Result of one batch: the outcomes newly counted and the duplicates."""

    credits: list[Credit]
    duplicates: int


@dataclass(frozen=True)
class Credit:
    """One outcome newly counted for one slate."""

    surface: str
    model_version: str
    outcome: Outcome


def feedback_tag(key_prefix: str) -> str:
    """Return the hash tag shared by every feedback key.

    One tag keeps each script's keys in one Redis Cluster slot, because a script
    that joins a user's slates and events also updates the shared window counts.
    """
    # LIMITATION(L-70): every feedback key sits in one Redis Cluster slot, so
    # the feedback state of a cluster lives on one shard.
    return f"{{{key_prefix}:feedback}}"


def window_key(key_prefix: str, window_start: int) -> str:
    """Return the hash that counts the outcomes of one tumbling window."""
    return f"{feedback_tag(key_prefix)}:w:{window_start}"


def window_index_key(key_prefix: str) -> str:
    """Return the sorted set of window starts that hold counts."""
    return f"{feedback_tag(key_prefix)}:windows"


# Shared Lua functions. ``credit`` bumps one window count at most once per slate
# and outcome; ``match`` credits a slate for one later event of the same user.
_LUA_PRELUDE = """
local tag = ARGV[1]
local window = tonumber(ARGV[2])
local user_ttl = tonumber(ARGV[3])
local counter_ttl = tonumber(ARGV[4])
local max_seen = tonumber(ARGV[5])
local out = {}

local function credit(slate, outcome)
  if slate.done[outcome] then return false end
  slate.done[outcome] = 1
  local key = tag .. ':w:' .. slate.w
  redis.call('HINCRBY', key, slate.s .. '|' .. slate.m .. '|' .. outcome, 1)
  redis.call('EXPIRE', key, counter_ttl)
  out[#out + 1] = {slate.s, slate.m, outcome}
  return true
end

local function match(slate, ev)
  if slate.t == nil or ev.q <= slate.t then return false end
  if ev.ts - slate.ts > window then return false end
  local contains = false
  for _, item in ipairs(slate.i) do
    if item == ev.i then contains = true break end
  end
  if not contains and ev.r ~= slate.id then return false end
  local changed = false
  if contains and ev.q == slate.t + 1 then changed = credit(slate, 'hit') end
  return credit(slate, ev.y) or changed
end

local function mark_seen(member)
  local n = redis.call('HINCRBY', KEYS[4], 'n', 1)
  redis.call('ZADD', KEYS[3], n, member)
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(max_seen + 1))
  for i = 1, 4 do redis.call('EXPIRE', KEYS[i], user_ttl) end
end
"""

# KEYS: events, slates, seen, state of one user.
# ARGV 6..: recommendation_id, surface, model_version, trigger_event_id,
# items (JSON list), window start, max slates kept, retention seconds.
_APPLY_SLATE = (
    _LUA_PRELUDE
    + """
local rid = ARGV[6]
if redis.call('ZSCORE', KEYS[3], 's:' .. rid) then return {0, out} end
local slate = {id = rid, s = ARGV[7], m = ARGV[8], g = ARGV[9],
               i = cjson.decode(ARGV[10]), w = ARGV[11], done = {}}
local window_start = tonumber(ARGV[11])
redis.call('ZADD', tag .. ':windows', window_start, ARGV[11])
redis.call('ZREMRANGEBYSCORE', tag .. ':windows', '-inf',
           window_start - tonumber(ARGV[13]))
credit(slate, 'impression')
local events = {}
for idx, raw in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local ev = cjson.decode(raw)
  events[idx] = ev
  if ev.id == slate.g then slate.t = ev.q slate.ts = ev.ts end
end
if slate.t ~= nil then
  for _, ev in ipairs(events) do match(slate, ev) end
end
redis.call('RPUSH', KEYS[2], cjson.encode(slate))
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[12]), -1)
mark_seen('s:' .. rid)
return {1, out}
"""
)

# KEYS: events, slates, seen, state of one user.
# ARGV 6..: event_id, item_id, event_type, event time (Unix seconds),
# recommendation_id or '', max events kept.
_APPLY_EVENT = (
    _LUA_PRELUDE
    + """
local event_id = ARGV[6]
if redis.call('ZSCORE', KEYS[3], 'e:' .. event_id) then return {0, out} end
local ev = {id = event_id, i = ARGV[7], y = ARGV[8], ts = tonumber(ARGV[9]),
            r = ARGV[10], q = redis.call('HINCRBY', KEYS[4], 'seq', 1)}
for idx, raw in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  local slate = cjson.decode(raw)
  local changed = false
  if slate.t == nil and slate.g == ev.id then
    slate.t = ev.q slate.ts = ev.ts changed = true
  end
  if match(slate, ev) then changed = true end
  if changed then redis.call('LSET', KEYS[2], idx - 1, cjson.encode(slate)) end
end
redis.call('RPUSH', KEYS[1], cjson.encode(ev))
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[11]), -1)
mark_seen('e:' .. event_id)
return {1, out}
"""
)


class FeedbackTables:
    """The per-user join state and the windowed outcome counts in Redis.

    Args:
        client: an asyncio Redis client that returns bytes.
        settings: the feedback app's settings (windows, caps, key prefix).
    """

    def __init__(self, client: redis.asyncio.Redis, settings: FeedbackSettings):
        self._client = client
        self._settings = settings
        self._tag = feedback_tag(settings.redis.key_prefix)
        self._apply_slate = client.register_script(_APPLY_SLATE)
        self._apply_event = client.register_script(_APPLY_EVENT)
        # A user's join state outlives the attribution window by an hour, so a
        # slate can still be credited by the last event inside the window.
        user_ttl = int(settings.attribution_window_seconds) + 3600
        # LIMITATION(L-72): ids older than this horizon are forgotten, so a
        # consumer-group reset that re-reads old messages counts them again.
        max_seen = 4 * (settings.max_recent_events + settings.max_recent_slates)
        self._common_args: list[str | int | float] = [
            self._tag,
            settings.attribution_window_seconds,
            user_ttl,
            settings.retention_seconds,
            max_seen,
        ]

    def window_start(self, timestamp: float) -> int:
        """Return the start, in Unix seconds, of the window holding ``timestamp``."""
        width = self._settings.window_seconds
        return int(timestamp // width) * width

    async def apply(self, records: Sequence[Slate | Event]) -> Applied:
        """Apply slates and events in order, in one round trip.

        A record applied before (same ``recommendation_id`` or ``event_id``
        within the per-user dedupe horizon) changes nothing.

        Returns:
            the outcomes newly counted, in the order they were counted, and the
            number of records that were applied before.
        """
        if not records:
            return Applied([], 0)
        async with self._client.pipeline(transaction=False) as pipe:
            for record in records:
                if isinstance(record, Slate):
                    await self._queue_slate(pipe, record)
                else:
                    await self._queue_event(pipe, record)
            results = await pipe.execute()
        credits = [
            Credit(as_text(surface), as_text(model_version), Outcome(as_text(outcome)))
            for _, outcomes in results
            for surface, model_version, outcome in outcomes
        ]
        duplicates = sum(1 for is_applied, _ in results if not is_applied)
        return Applied(credits, duplicates)

    async def close(self) -> None:
        """Close the Redis client."""
        await self._client.aclose()

    def _user_keys(self, user_id: str) -> list[str]:
        base = f"{self._tag}:u:{user_id}"
        return [f"{base}:events", f"{base}:slates", f"{base}:seen", f"{base}:state"]

    async def _queue_slate(
        self, pipe: redis.asyncio.client.Pipeline, slate: Slate
    ) -> None:
        args = [
            *self._common_args,
            slate.recommendation_id,
            slate.surface.value,
            slate.model_version,
            slate.trigger_event_id,
            json.dumps([entry.item_id for entry in slate.items]),
            self.window_start(slate.generated_at.timestamp()),
            self._settings.max_recent_slates,
            self._settings.retention_seconds,
        ]
        await self._apply_slate(
            keys=self._user_keys(slate.user_id), args=args, client=pipe
        )

    async def _queue_event(
        self, pipe: redis.asyncio.client.Pipeline, event: Event
    ) -> None:
        context = event.context
        recommendation_id = context.recommendation_id if context is not None else None
        args = [
            *self._common_args,
            event.event_id,
            event.item_id,
            event.event_type.value,
            event.event_timestamp,
            recommendation_id or "",
            self._settings.max_recent_events,
        ]
        await self._apply_event(
            keys=self._user_keys(event.user_id), args=args, client=pipe
        )


def as_text(value: bytes | str) -> str:
    """Return a Redis reply as text."""
    return value.decode() if isinstance(value, bytes) else value
