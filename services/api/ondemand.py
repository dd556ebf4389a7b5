"""Slates computed on request for a user who has no stored slate.

The trigger is the user's own latest activity: the newest item for products
and promotions, the newest cart add for bundles, the newest click for reviews.
A promotions trigger takes the type of the user's newest event (a click for a
user without history) when that type is a promotion event, else the
alphabetically first promotion event type. A user without history gets the
shop's top trending item as context, with the time of the request as the
trigger's time, so a new visitor still gets a products slate. Session-kNN
scores the session of the user's newest event that the API's index has read.
On-demand slates are returned, not published, because no event triggered them.

A computed slate is returned even when it has no items, like a stored one.
Promotions, for example, have items only while a promotion's time window
contains the trigger's time. There is no slate when nothing anchors one (a
user without a cart add asks for bundles) or when the builder makes none for
the anchor on that surface (the reviews of an item without reviews), just as
the hot path stores none for such a trigger.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence

from schemas.events import EventType
from schemas.features import RecentItem
from schemas.recommendations import Slate, Surface
from services.scorer.protocols import CandidateStore, UserHistory
from services.scorer.session_knn import session_key
from services.scorer.settings import ScorerSettings
from services.scorer.slates import SlateBuilder, Trigger

__all__ = ["OnDemandSlates"]


class OnDemandSlates:
    """Compute one surface's slate for a user from the current Redis state.

    Args:
        builder: the slate builder (the same ranking as the hot path).
        store: reads of the user's history and of trending items.
        settings: the scorer settings (promotion events).
        session_key_of: returns the session-kNN key of a user's current
            session. By default it is the key of the user's history without a
            session.
        clock: wall-clock Unix seconds.
    """

    def __init__(
        self,
        builder: SlateBuilder,
        store: CandidateStore,
        settings: ScorerSettings,
        *,
        session_key_of: Callable[[str], str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._builder = builder
        self._store = store
        self._settings = settings
        self._session_key_of = session_key_of or _history_session_key
        self._clock = clock

    def compute(self, user_id: str, surface: Surface) -> Slate | None:
        """Return a fresh slate, possibly without items.

        Returns:
            The slate of ``surface``, or None when nothing anchors it or the
            builder makes no slate on that surface for the anchor.
        """
        history = self._store.user_histories([user_id])[user_id]
        anchor = self._anchor(history, surface)
        if anchor is None:
            return None
        item_id, event_type = anchor
        now = self._clock()
        trigger = Trigger(
            event_id=f"on-demand-{uuid.uuid4().hex}",
            user_id=user_id,
            item_id=item_id,
            event_type=event_type,
            event_time=history.last_event_time or now,
            session_key=self._session_key_of(user_id),
            received_at=now,
        )
        [slates] = self._builder.build([trigger])
        return next((slate for slate in slates if slate.surface is surface), None)

    def _anchor(
        self, history: UserHistory, surface: Surface
    ) -> tuple[str, EventType] | None:
        if surface is Surface.BUNDLES:
            return _latest(history.recent, EventType.CART_ADD)
        if surface is Surface.REVIEWS:
            return _latest(history.recent, EventType.CLICK)
        event_type = EventType.CLICK
        if surface is Surface.PROMOTIONS:
            allowed = self._settings.surfaces.promotion_events
            if not allowed:
                return None
            if history.recent:
                event_type = history.recent[0].event_type
            if event_type not in allowed:
                event_type = min(allowed)
        if history.recent:
            return history.recent[0].item_id, event_type
        top = self._store.trending([None], 1).get(None, [])
        return (top[0][0], event_type) if top else None


def _history_session_key(user_id: str) -> str:
    return session_key(user_id, None)


def _latest(
    recent: Sequence[RecentItem], event_type: EventType
) -> tuple[str, EventType] | None:
    for entry in recent:
        if entry.event_type is event_type:
            return entry.item_id, event_type
    return None
