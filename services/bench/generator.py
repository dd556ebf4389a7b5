"""A synthetic shop and its event stream, shaped by a :class:`LoadProfile`.

:class:`SyntheticShop` is a catalog far larger than the sample: every item
has a popularity rank (its index), a category and brand drawn from power laws
with the profile's exponents, and a log-normal price. :func:`generate_events`
then simulates shoppers. Sessions start as a Poisson process. Each one belongs to
a user drawn by activity and has a length drawn from the sample's lengths,
with gaps drawn from the sample's gap quantiles. A click repeats an item of
the session, stays in the previous item's category, or picks an item by
global popularity, with the profile's probabilities. After a click, a cart add
or a direct purchase of the same item may follow, and after a cart add a
purchase, at the profile's funnel rates. Funnel steps always follow their
click, so they may lengthen a session by one or two events.

The stream is a generator: it keeps only the open sessions (a heap ordered by
their next event time), never the events, so memory does not grow with the
number of events. Events come out in event-time order, with ids
``bench-<n>`` numbered from 0. The same profile, shop and seed give the
same events.

NOTE: same-category clicks avoid the session's items, which flattens the
popularity curve a little: refitted on 60,000 generated events, the item
exponent comes out about 0.05 below the profile's (0.632 against 0.687 on
the REES46 profile).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from schemas.catalog import ItemRecord
from schemas.events import Event, EventType
from services.bench.powerlaw import PowerLaw, draw_cumulative
from services.bench.profile import LoadProfile

__all__ = [
    "SYNTHETIC_START",
    "ShopSize",
    "SyntheticShop",
    "active_users",
    "event_index",
    "generate_events",
]

# Event time of the first synthetic event: fixed, so that runs repeat, and in
# the past, so that no event is rejected as coming from the future.
SYNTHETIC_START = datetime(2026, 1, 1, tzinfo=UTC)

_EVENT_ID_PREFIX = "bench-"
_NEW_ITEM_TRIES = 5
# Clicks counted before a branch probability is steered.
_STEER_AFTER = 100


def active_users(users: int, exponent: float, sessions: int) -> float:
    """Return the expected number of users with a session among ``sessions``.

    Each session belongs to a user drawn from ``PowerLaw(users, exponent)``.
    """
    weights = np.arange(1, users + 1, dtype=np.float64) ** -exponent
    shares = weights / weights.sum()
    return float(np.sum(-np.expm1(sessions * np.log1p(-shares))))


MAX_USERS_PER_SESSION = 10
"""The synthetic shop has at most this many users per session of the stream."""


def _population(active: int, exponent: float, sessions: int) -> int:
    """Return the user count whose expected active users is about ``active``.

    ``active`` must be below ``sessions``, since every session has one user.
    A law steeper than 1, or a sample where nearly every session has its own
    user, may need a population far larger than the stream, so the count
    stops at :data:`MAX_USERS_PER_SESSION` times the sessions. The stream then
    has somewhat fewer distinct users than the sample's share.
    """
    limit = MAX_USERS_PER_SESSION * sessions
    low, high = active, active
    while active_users(high, exponent, sessions) < active:
        if high >= limit:
            return limit
        low, high = high, high * 2
    # Bisection to within 1 %; every step costs one pass over the users.
    while high - low > max(1, low // 100):
        middle = (low + high) // 2
        if active_users(middle, exponent, sessions) < active:
            low = middle
        else:
            high = middle
    return high


@dataclass(frozen=True)
class ShopSize:
    """How many users, items, categories and brands the synthetic shop has."""

    users: int
    items: int
    categories: int
    brands: int
    sessions_per_second: float

    @classmethod
    def scaled(
        cls,
        profile: LoadProfile,
        events: int,
        users: int | None = None,
        items: int | None = None,
    ) -> ShopSize:
        """Return a shop sized for ``events`` events.

        The users are as many as it takes for the expected number of active
        users (those with a session) to grow with the events, so that active
        users keep the sample's events per user. Items grow with the square
        root of the events (a bigger shop also sells more items, but the
        catalog grows slower than the traffic), categories and brands with the
        square root of the items. Sessions start as much faster than in the
        sample as there are more events, so the stream spans about as much
        event time as the sample. Either count may be given instead.
        """
        if users is None:
            sessions = max(2, round(events / profile.mean_session_length))
            # The sample has fewer users than sessions; the cap keeps that
            # true for any profile, or no user count could reach the target.
            share = min(0.99, profile.sample_users / max(1, profile.sample_sessions))
            active = max(1, round(sessions * share))
            users = _population(active, profile.user_exponent, sessions)
        scale = max(1.0, events / profile.sample_events)
        items = items or max(
            profile.sample_items, round(profile.sample_items * math.sqrt(scale))
        )
        growth = math.sqrt(items / max(1, profile.sample_items))
        return cls(
            users=users,
            items=items,
            categories=max(1, round(max(1, profile.sample_categories) * growth)),
            brands=max(1, round(max(1, profile.sample_brands) * growth)),
            sessions_per_second=profile.sessions_per_second * scale,
        )


class SyntheticShop:
    """Items with category, brand and price; item ``k`` has popularity rank ``k``.

    Args:
        profile: the fitted profile (catalog exponents, brand share, prices).
        size: the number of users, items, categories and brands.
        seed: seeds the catalog; the same inputs give the same shop.
    """

    def __init__(self, profile: LoadProfile, size: ShopSize, seed: int) -> None:
        self.profile = profile
        self.size = size
        self.popularity = PowerLaw(size.items, profile.item_exponent)
        self.activity = PowerLaw(size.users, profile.user_exponent)
        self.category_of = array("i")
        self.brand_of = array("i")
        self.price_of = array("d")
        # Each category's items in popularity order, for same-category clicks.
        self.members: list[array[int]] = [array("i") for _ in range(size.categories)]
        self._draw_items(random.Random(f"shop-{seed}"))

        # The running sum of the members' global popularity weights.
        self.member_weights = [
            array("d", itertools.accumulate(self.popularity.weight(i) for i in group))
            for group in self.members
        ]

    def _draw_items(self, rng: random.Random) -> None:
        profile, size = self.profile, self.size
        category_means = [
            rng.gauss(profile.log_price_mean, profile.log_price_between_sd)
            for _ in range(size.categories)
        ]
        categories = PowerLaw(size.categories, profile.category_exponent)
        brands = PowerLaw(size.brands, profile.brand_exponent)
        for item in range(size.items):
            category = categories.draw(rng)
            self.category_of.append(category)
            self.members[category].append(item)

            has_brand = rng.random() < profile.brand_share
            brand = brands.draw(rng)
            self.brand_of.append(brand if has_brand else -1)

            has_price = rng.random() < profile.price_share
            price = math.exp(
                rng.gauss(category_means[category], profile.log_price_within_sd)
            )
            self.price_of.append(round(price, 2) if has_price else math.nan)

    @staticmethod
    def item_id(item: int) -> str:
        """Return the id of item ``item``."""
        return f"si{item}"

    @staticmethod
    def user_id(user: int) -> str:
        """Return the id of user ``user``."""
        return f"su{user}"

    def price(self, item: int) -> float | None:
        """Return the item's price, or None when it has none."""
        price = self.price_of[item]
        return None if math.isnan(price) else price

    def items(self, updated_at: datetime = SYNTHETIC_START) -> Iterator[ItemRecord]:
        """Yield the catalog record of every item, most popular first."""
        for item in range(self.size.items):
            brand = self.brand_of[item]
            yield ItemRecord(
                item_id=self.item_id(item),
                category_id=f"sc{self.category_of[item]}",
                brand=f"sb{brand}" if brand >= 0 else None,
                price=self.price(item),
                stock=100,
                updated_at=updated_at,
            )


@dataclass
class _Session:
    session_id: str
    user_id: str
    remaining: int
    clicked: list[int] = field(default_factory=list)
    pending: tuple[EventType, int] | None = None


class _Shoppers:
    """The choices of one stream: users, lengths, gaps, items and the funnel."""

    def __init__(self, shop: SyntheticShop, rng: random.Random) -> None:
        self.shop = shop
        self.profile = shop.profile
        self.rng = rng
        self.length_weights = list(_cumulative(self.profile.session_length_weights))
        self._repeat = _Share(self.profile.repeat_click)
        self._same_category = _Share(self.profile.same_category)

    def session(self, number: int, seed: int) -> _Session:
        user = self.shop.activity.draw(self.rng)
        length = self.rng.choices(
            range(1, len(self.length_weights) + 1), cum_weights=self.length_weights
        )[0]
        return _Session(f"ss{seed}-{number}", self.shop.user_id(user), length)

    def gap_seconds(self) -> float:
        quantiles = self.profile.gap_quantiles_seconds
        position = self.rng.random() * (len(quantiles) - 1)
        low = int(position)
        high = min(low + 1, len(quantiles) - 1)
        return quantiles[low] + (position - low) * (quantiles[high] - quantiles[low])

    def next_step(self, session: _Session) -> tuple[EventType, int]:
        """Return the session's next event type and item, and plan the funnel."""
        if session.pending is not None:
            event_type, item = session.pending
            session.pending = None
            if (
                event_type is EventType.CART_ADD
                and self.rng.random() < self.profile.purchase_after_cart
            ):
                session.pending = (EventType.PURCHASE, item)
            return event_type, item
        item = self._click_item(session)
        session.clicked.append(item)
        draw = self.rng.random()
        if draw < self.profile.cart_per_click:
            session.pending = (EventType.CART_ADD, item)
        elif (
            draw < self.profile.cart_per_click + self.profile.direct_purchase_per_click
        ):
            session.pending = (EventType.PURCHASE, item)
        return EventType.CLICK, item

    def _click_item(self, session: _Session) -> int:
        if not session.clicked:
            return self.shop.popularity.draw(self.rng)
        previous = session.clicked[-1]
        if self.rng.random() < self._repeat.probability():
            item = self.rng.choice(session.clicked)
        elif self.rng.random() < self._same_category.probability():
            item = self._same_category_item(session, previous)
        else:
            item = self.shop.popularity.draw(self.rng)
        is_repeat = item in session.clicked
        self._repeat.count(is_repeat)
        if not is_repeat:
            category_of = self.shop.category_of
            self._same_category.count(category_of[item] == category_of[previous])
        return item

    def _same_category_item(self, session: _Session, previous: int) -> int:
        # Shoppers browsing a category move on to items they have not seen,
        # so an item already in the session is replaced by a new draw, up to
        # five times.
        category = self.shop.category_of[previous]
        members, weights = (
            self.shop.members[category],
            self.shop.member_weights[category],
        )
        for _ in range(_NEW_ITEM_TRIES):
            item = members[draw_cumulative(self.rng, weights)]
            if item not in session.clicked:
                break
        return item


class _Share:
    """Steers a branch probability so that the share it produces hits a target.

    A new-item draw may hit an item already in the session (counted as a
    repeat, as in the profile), and a draw by global popularity may land in
    the previous item's category. The branch probability is therefore
    corrected by the gap between the target and the share produced so far.
    """

    def __init__(self, target: float) -> None:
        self.target = target
        self.trials = 0
        self.hits = 0

    def probability(self) -> float:
        if self.trials < _STEER_AFTER:
            return self.target
        produced = self.hits / self.trials
        return min(1.0, max(0.0, 2.0 * self.target - produced))

    def count(self, is_hit: bool) -> None:
        self.trials += 1
        self.hits += is_hit


def _cumulative(weights: list[float]) -> Iterator[float]:
    total = 0.0
    for weight in weights:
        total += weight
        yield total


def generate_events(
    shop: SyntheticShop,
    count: int,
    seed: int,
    start: datetime = SYNTHETIC_START,
    first_index: int = 0,
) -> Iterator[Event]:
    """Yield ``count`` synthetic events of ``shop`` in event-time order.

    Sessions start as a Poisson process at the shop's ``sessions_per_second``.

    Args:
        shop: the synthetic shop whose users and items the events use.
        count: how many events to yield.
        seed: seeds every choice; the same inputs give the same events.
        start: event time of the first session's start.
        first_index: number of the first event id, to continue a stream.
    """
    # LIMITATION(L-76): sessions start at one constant rate, the catalog never
    # changes and no shopper reacts to a slate.
    rng = random.Random(f"events-{seed}")
    shoppers = _Shoppers(shop, rng)
    rate = shop.size.sessions_per_second
    heap: list[tuple[float, int, _Session]] = []
    arrival = 0.0
    sessions = 0
    for index in range(first_index, first_index + count):
        while not heap or arrival <= heap[0][0]:
            heapq.heappush(heap, (arrival, sessions, shoppers.session(sessions, seed)))
            sessions += 1
            arrival += rng.expovariate(rate)
        at, number, session = heapq.heappop(heap)
        event_type, item = shoppers.next_step(session)
        session.remaining -= 1
        if session.remaining > 0 or session.pending is not None:
            heapq.heappush(heap, (at + shoppers.gap_seconds(), number, session))
        yield _event(shop, session, index, event_type, item, start, at)


def _event(
    shop: SyntheticShop,
    session: _Session,
    index: int,
    event_type: EventType,
    item: int,
    start: datetime,
    at: float,
) -> Event:
    is_purchase = event_type is EventType.PURCHASE
    return Event(
        event_id=f"{_EVENT_ID_PREFIX}{index}",
        event_type=event_type,
        user_id=session.user_id,
        item_id=shop.item_id(item),
        event_time=start + timedelta(seconds=at),
        session_id=session.session_id,
        quantity=1 if is_purchase else None,
        price=shop.price(item),
        order_id=f"so-{session.session_id}" if is_purchase else None,
    )


def event_index(event_id: str) -> int | None:
    """Return ``n`` of a synthetic event id ``bench-<n>``, or None for another id."""
    if not event_id.startswith(_EVENT_ID_PREFIX):
        return None
    tail = event_id[len(_EVENT_ID_PREFIX) :]
    return int(tail) if tail.isdigit() else None
