"""Session-based nearest neighbours in the spirit of V-SKNN and STAN.

The index keeps the most recently active sessions in process. To score the
current session it looks up recent sessions that share its items and weighs
each shared item by its distance from the end of the current session, so
later items count more. Each neighbour session decays by its age, and the k
most similar sessions vote for the items they contain. A vote weighs less the
further its item is from the neighbour's latest item shared with the current
session, as in STAN.

Only the latest items of the current session are looked up. The older ones
would weigh together at most ``LEFT_OUT_WEIGHT`` (0.1 %) of the latest
item's weight, however long the session. How far back that reaches follows
the position decay: 16 items at the default of 2, 25 at 3. The older items
are looked up too only when the latest ones share fewer sessions than
there are voters.

Items already in the current session get votes too: shoppers often return to
an item they viewed a few clicks earlier. The caller leaves out the trigger
item. Leaving the session's own items out found about half as many next
items on the real samples (``docs/evaluation.md``).

Memory is bounded: at most ``max_sessions`` sessions of ``max_items`` items
each, at most ``max_total_items`` items over all sessions, and at most
``samples_per_item`` session ids per item. When sessions are long, the
total is the bound that limits memory: the index takes 0.3 to 0.6 kB per
item (``docs/benchmarks/sessions.md``).
"""

from __future__ import annotations

import functools
import heapq
import math
import sys
from collections import OrderedDict
from collections.abc import Container
from dataclasses import dataclass, field

__all__ = ["LEFT_OUT_WEIGHT", "SessionIndex", "looked_up_items", "session_key"]

# The maximum total weight of the items that a lookup leaves out, as a share of
# the weight of the session's latest item.
LEFT_OUT_WEIGHT = 1e-3


def session_key(user_id: str, session_id: str | None) -> str:
    """Return the session-kNN key of an event: its session, else the user's history."""
    return f"{user_id}/{session_id}" if session_id else f"{user_id}/"


def looked_up_items(length: int, position_decay: float) -> int:
    """Return how many of a session's latest items ``recommend`` looks up.

    The item ``d`` positions from the end weighs ``exp(-d / position_decay)``,
    so the items ``d >= n`` weigh at most ``exp(-n / position_decay) /
    (1 - exp(-1 / position_decay))`` together, however long the session.
    The count is the smallest ``n`` for which that is at most
    ``LEFT_OUT_WEIGHT``, and at most ``length``.

    Args:
        length: items in the session.
        position_decay: positions from the end of the session over which an
            item's weight falls by a factor of e.
    """
    return min(length, _reach(position_decay, LEFT_OUT_WEIGHT))


# Cached because recommend runs once per event with the same settings.
@functools.lru_cache(maxsize=64)
def _reach(position_decay: float, left_out_weight: float) -> int:
    tail_factor = 1.0 - math.exp(-1.0 / position_decay)
    return math.ceil(-position_decay * math.log(left_out_weight * tail_factor))


@functools.lru_cache(maxsize=64)
def _falloff(neighbour_position_decay: float, max_items: int) -> tuple[float, ...]:
    """Return the vote factor for each distance from the latest shared item."""
    return tuple(
        math.exp(-distance / neighbour_position_decay) for distance in range(max_items)
    )


def _last_position_in(items: list[str], current: Container[str]) -> int:
    """Return the position of the last of ``items`` that ``current`` contains."""
    for position in range(len(items) - 1, -1, -1):
        if items[position] in current:
            return position
    raise ValueError("the neighbour session shares no item with the current one")


@dataclass
class _Session:
    items: OrderedDict[str, float] = field(default_factory=OrderedDict)
    last_time: float = 0.0


# LIMITATION(L-50): the index lives in the scoring process and contains only
# the sessions of the partitions this instance consumes. After a restart or a
# rebalance, services.scorer.warmup reads back a bounded number of recent
# events per new partition, so older sessions are missing until they return.
class SessionIndex:
    """A bounded in-process index of recent sessions and the items in them.

    Args:
        max_sessions: sessions kept; the least recently updated one is evicted.
        max_items: items kept per session; the oldest item is dropped.
        samples_per_item: most recent sessions remembered per item.
        max_total_items: items kept over all sessions; the least recently
            updated sessions are evicted while the index contains more. None
            leaves only ``max_sessions * max_items``.

    Raises:
        ValueError: a size is below 1, or ``max_total_items`` is below
            ``max_items``.
    """

    def __init__(
        self,
        max_sessions: int,
        max_items: int,
        samples_per_item: int,
        *,
        max_total_items: int | None = None,
    ) -> None:
        if max_sessions < 1 or max_items < 1 or samples_per_item < 1:
            raise ValueError(
                f"session index sizes must be positive, got max_sessions={max_sessions}"
                f" max_items={max_items} samples_per_item={samples_per_item}"
            )
        if max_total_items is not None and max_total_items < max_items:
            raise ValueError(
                f"max_total_items={max_total_items} is below max_items={max_items};"
                " the index must have room for one full session"
            )
        self._max_sessions = max_sessions
        self._max_items = max_items
        self._samples_per_item = samples_per_item
        self._max_total_items = (
            sys.maxsize if max_total_items is None else max_total_items
        )
        self._total_items = 0
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._item_sessions: dict[str, OrderedDict[str, None]] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def session_items(self, session_key: str) -> list[str]:
        """Return the items of a session, oldest first."""
        session = self._sessions.get(session_key)
        return list(session.items) if session is not None else []

    def add(self, session_key: str, item_id: str, event_time: float) -> None:
        """Record that ``item_id`` was seen in a session at ``event_time`` (Unix s).

        Adding the same item at the same time twice changes nothing, so a
        replayed batch leaves the index as it was.
        """
        session = self._sessions.get(session_key)
        if session is None:
            session = _Session()
            self._sessions[session_key] = session
        self._sessions.move_to_end(session_key)

        # An item seen again moves to the newest position of its session.
        if session.items.pop(item_id, None) is None:
            self._total_items += 1
        session.items[item_id] = event_time
        session.last_time = max(session.last_time, event_time)
        if len(session.items) > self._max_items:
            dropped, _ = session.items.popitem(last=False)
            self._total_items -= 1
            self._unlink(dropped, session_key)

        postings = self._item_sessions.setdefault(item_id, OrderedDict())
        postings.pop(session_key, None)
        postings[session_key] = None
        if len(postings) > self._samples_per_item:
            postings.popitem(last=False)

        # The current session is the newest and contains at most max_items, so
        # the loop stops before it.
        while (
            len(self._sessions) > self._max_sessions
            or self._total_items > self._max_total_items
        ):
            evicted_key, evicted = self._sessions.popitem(last=False)
            self._total_items -= len(evicted.items)
            for evicted_item in evicted.items:
                self._unlink(evicted_item, evicted_key)

    def recommend(
        self,
        session_key: str,
        now: float,
        neighbours: int,
        half_life_seconds: float,
        *,
        position_decay: float = 2.0,
        neighbour_position_decay: float = 3.0,
        limit: int | None = None,
    ) -> list[tuple[str, float]]:
        """Score items of similar sessions for the current session, best first.

        Only the latest :func:`looked_up_items` items of the current session
        are looked up, unless they bring fewer than ``neighbours`` sessions.
        The older items weigh together at most ``LEFT_OUT_WEIGHT`` of the
        latest item's weight, so a neighbour's overlap is at most that much
        lower than with every item looked up. A session that shares only
        older items is no neighbour.

        When the latest items bring fewer sessions, every session found votes
        however small its similarity, so every item is looked up, as before.
        The sessions that share only older items then fill the end of short
        lists. Without them, HR@20 fell on three of the six real samples
        (``docs/benchmarks/sessions.md``).

        The normalisation still counts every item of the current session. A
        neighbour's votes still count from its latest item that is anywhere
        in the current session.

        Args:
            session_key: the current session.
            now: the current event time (Unix s); neighbour sessions decay by
                their age relative to it.
            neighbours: how many of the most similar sessions vote.
            half_life_seconds: age at which a neighbour session's vote halves.
            position_decay: positions from the end of the current session
                over which an item's weight falls by a factor of e.
            neighbour_position_decay: positions from a neighbour's latest
                shared item over which a vote falls by a factor of e.
            limit: how many of the best items to return; None returns all.

        Returns:
            ``(item_id, score)`` pairs, the current session's items included.
        """
        session = self._sessions.get(session_key)
        if session is None or not session.items:
            return []
        current = list(session.items)
        length = len(current)

        # Similarity: position-weighted overlap, normalised by both lengths.
        # When fewer than `neighbours` sessions share the latest items, the
        # sessions that share only older items vote too, so all are looked up.
        first = length - looked_up_items(length, position_decay)
        overlap = self._overlap(session_key, current[first:], length, position_decay)
        if first > 0 and len(overlap) < neighbours:
            overlap = self._overlap(session_key, current, length, position_decay)

        # LIMITATION(L-88): every session that shares a looked-up item is
        # scored, and each neighbour then votes for all its items, so sessions
        # of 50 items still take 16 to 20 times as long as typical ones.
        scored_sessions = []
        for other_key, shared in overlap.items():
            other = self._sessions[other_key]
            age = max(0.0, now - other.last_time)
            decay = 0.5 ** (age / half_life_seconds)
            similarity = shared / math.sqrt(len(other.items) * length) * decay
            scored_sessions.append((similarity, other_key))
        nearest = heapq.nlargest(neighbours, scored_sessions)

        # Each neighbour votes for its items, most for those it visited close
        # to the latest item it shares with the current session.
        falloff = _falloff(neighbour_position_decay, self._max_items)
        votes: dict[str, float] = {}
        for similarity, other_key in nearest:
            items = list(self._sessions[other_key].items)
            shared = _last_position_in(items, session.items)
            for position, item_id in enumerate(items):
                vote = similarity * falloff[abs(position - shared)]
                votes[item_id] = votes.get(item_id, 0.0) + vote
        # Sorting the ids and then stably by vote gives the order of the key
        # (-vote, id) without building a key tuple for every item.
        ranked = sorted(votes)
        ranked.sort(key=votes.__getitem__, reverse=True)
        return [(item_id, votes[item_id]) for item_id in ranked[:limit]]

    def _overlap(
        self,
        session_key: str,
        latest: list[str],
        length: int,
        position_decay: float,
    ) -> dict[str, float]:
        """Sum, per other session, the weights of the items it shares with ``latest``.

        Args:
            session_key: the current session, which is left out.
            latest: the current session's latest items, oldest first.
            length: items in the whole current session.
            position_decay: as in :meth:`recommend`.
        """
        overlap: dict[str, float] = {}
        first = length - len(latest)
        for position, item_id in enumerate(latest, start=first + 1):
            weight = math.exp((position - length) / position_decay)
            for other_key in self._item_sessions.get(item_id, ()):
                if other_key != session_key:
                    overlap[other_key] = overlap.get(other_key, 0.0) + weight
        return overlap

    def _unlink(self, item_id: str, session_key: str) -> None:
        postings = self._item_sessions.get(item_id)
        if postings is None:
            return
        postings.pop(session_key, None)
        if not postings:
            del self._item_sessions[item_id]
