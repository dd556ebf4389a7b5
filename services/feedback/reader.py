"""Read the feedback app's windowed outcome counts from Redis.

The trainer's promotion check and the metrics export use this module; neither
needs the Faust worker to be running, only the Redis it writes to.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import redis

from services.feedback.tables import (
    Outcome,
    as_text,
    window_index_key,
    window_key,
)

__all__ = ["OutcomeKey", "hit_rate", "outcome_counts", "outcome_ratios"]

OutcomeKey = tuple[str, str, Outcome]
"""(surface, model_version, outcome) of one count."""


def outcome_counts(
    client: redis.Redis, key_prefix: str, since: datetime
) -> Counter[OutcomeKey]:
    """Sum the outcome counts of every window that starts at or after ``since``.

    Args:
        client: a synchronous Redis client.
        key_prefix: the Redis key prefix the feedback app writes under.
        since: a timezone-aware datetime; windows starting before it are left out.

    Returns:
        counts keyed by (surface, model_version, outcome).

    Raises:
        ValueError: ``since`` is a naive datetime.
    """
    if since.tzinfo is None:
        raise ValueError(f"since={since!r} is naive; pass a timezone-aware datetime")
    starts: list[bytes] = client.zrangebyscore(  # type: ignore[assignment]
        window_index_key(key_prefix), since.timestamp(), "+inf"
    )
    with client.pipeline(transaction=False) as pipe:
        for start in starts:
            pipe.hgetall(window_key(key_prefix, int(as_text(start))))
        windows = pipe.execute()
    counts: Counter[OutcomeKey] = Counter()
    for fields in windows:
        for field, value in fields.items():
            surface, rest = as_text(field).split("|", 1)
            model_version, outcome = rest.rsplit("|", 1)
            counts[(surface, model_version, Outcome(outcome))] += int(value)
    return counts


def outcome_ratios(
    counts: Counter[OutcomeKey],
) -> dict[OutcomeKey, float]:
    """Divide every non-impression count by the impressions of its slates.

    Pairs of surface and model version without impressions are left out.
    """
    ratios: dict[OutcomeKey, float] = {}
    for (surface, model_version, outcome), count in counts.items():
        impressions = counts[(surface, model_version, Outcome.IMPRESSION)]
        if outcome is not Outcome.IMPRESSION and impressions > 0:
            ratios[(surface, model_version, outcome)] = count / impressions
    return ratios


def hit_rate(
    client: redis.Redis,
    key_prefix: str,
    surface: str,
    model_version: str,
    since: datetime,
) -> float | None:
    """Return the share of a model version's slates whose next event was a hit.

    A hit is the user's next event landing on an item of the slate. Only slates
    published in windows that start at or after ``since`` count.

    Returns:
        hits divided by impressions, or None when the version published no
        slate on that surface since then.
    """
    counts = outcome_counts(client, key_prefix, since)
    impressions = counts[(surface, model_version, Outcome.IMPRESSION)]
    if impressions == 0:
        return None
    return counts[(surface, model_version, Outcome.HIT)] / impressions
