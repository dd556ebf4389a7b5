"""Requests for an early retraining of the batch model, passed through Redis.

The online learner raises a request when its drift detector fires, and the
trainer takes it and starts a training run before its regular schedule. At
most one request is pending. Further requests before the trainer takes it are
merged into it: the count grows, and the first detection time and the latest
reason are kept. A burst of drift alarms therefore costs one retraining, not
one per alarm.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import redis

__all__ = [
    "RETRAIN_REQUEST_TTL_SECONDS",
    "RetrainRequest",
    "request_retrain",
    "retrain_request_key",
    "take_retrain_request",
]

# A request that no trainer takes within a week is stale: the drift it reports
# is long absorbed by the regular schedule.
RETRAIN_REQUEST_TTL_SECONDS = 7 * 24 * 3600

# Merge the new request into a pending one in one atomic step, so two learners
# raising drift at once both count and neither overwrites the other.
_MERGE_SCRIPT = """
local current = redis.call('GET', KEYS[1])
local incoming = cjson.decode(ARGV[1])
if current then
  local pending = cjson.decode(current)
  incoming['detected_at'] = pending['detected_at']
  incoming['count'] = pending['count'] + 1
end
redis.call('SET', KEYS[1], cjson.encode(incoming), 'EX', tonumber(ARGV[2]))
return incoming['count']
"""


@dataclass(frozen=True)
class RetrainRequest:
    """A pending request to retrain the batch model early.

    Attributes:
        reason: why the latest request was made, e.g. ``drift in the
            prequential loss of the online cart_add model``.
        detected_at: when the first merged request was detected (UTC).
        requested_at: when the latest merged request was written (UTC).
        count: how many requests were merged into this one.
    """

    reason: str
    detected_at: datetime
    requested_at: datetime
    count: int


def retrain_request_key(key_prefix: str) -> str:
    """Return the Redis key of the pending retrain request."""
    return f"{key_prefix}:retrain:request"


def request_retrain(
    client: redis.Redis, key_prefix: str, reason: str, detected_at: datetime
) -> None:
    """Record a retrain request, merging it into one that is already pending.

    Args:
        client: Redis connection.
        key_prefix: the deployment's Redis key prefix.
        reason: short human-readable cause, logged by the trainer.
        detected_at: when the cause was detected; must be timezone-aware.

    Raises:
        ValueError: ``detected_at`` is naive.
    """
    if detected_at.tzinfo is None:
        raise ValueError(
            f"detected_at={detected_at!r} is naive; expected a timezone-aware datetime"
        )
    document = {
        "reason": reason,
        "detected_at": detected_at.astimezone(UTC).isoformat(),
        "requested_at": datetime.now(UTC).isoformat(),
        "count": 1,
    }
    client.eval(
        _MERGE_SCRIPT,
        1,
        retrain_request_key(key_prefix),
        json.dumps(document),
        RETRAIN_REQUEST_TTL_SECONDS,
    )


def take_retrain_request(client: redis.Redis, key_prefix: str) -> RetrainRequest | None:
    """Remove and return the pending retrain request, or None when there is none.

    GETDEL makes the take atomic: of two trainers polling at once, one gets the
    request and the other gets None.
    """
    raw = cast(bytes | None, client.getdel(retrain_request_key(key_prefix)))
    if raw is None:
        return None
    document = json.loads(raw)
    return RetrainRequest(
        reason=str(document["reason"]),
        detected_at=datetime.fromisoformat(document["detected_at"]),
        requested_at=datetime.fromisoformat(document["requested_at"]),
        count=int(document["count"]),
    )
