"""A load profile fitted on real shop events, for the synthetic generator.

:func:`fit_profile` reads datasets already turned into Cartwheel events by
the replay adapters and measures what the generator needs to imitate them:

- user activity: sessions per user, as a power-law exponent of the
  rank-frequency curve (fitted, then corrected for the sample's size, see
  :mod:`services.bench.powerlaw`), plus the mean events per user;
- item popularity: events per item, the same kind of exponent plus the
  empirical shares of the top ranks;
- catalog structure: items per category and per brand (exponents), the share
  of items with a brand, and log-normal prices split into a between-category
  and a within-category spread;
- sessions: the distribution of events per session, the quantiles of the gaps
  between a session's events, and how many sessions start per second;
- the funnel: cart adds per click, the share of cart adds followed by a
  purchase of the same item in the session, and purchases with no cart add
  before them, per click;
- locality: how often a click repeats an item already clicked in the session,
  and how often a click on a new item stays in the previous item's category.

The profile is a JSON document (:meth:`LoadProfile.model_dump_json`), so a run
can print it, store it in its report and be repeated from it.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict

from schemas.events import Event, EventType
from services.bench.powerlaw import debiased_exponent, power_law_exponent
from services.replay.datasets import Dataset

__all__ = [
    "GAP_QUANTILES",
    "MAX_SESSION_LENGTH",
    "LoadProfile",
    "fit_profile",
]

# Sessions longer than this are cut to it. Real samples have a few bot-like
# sessions with hundreds of events; keeping them would let one draw dominate.
MAX_SESSION_LENGTH = 200

# Gaps are stored as this many quantiles (0 %, 1 %, ..., 100 %).
GAP_QUANTILES = 101

_TOP_SHARE_RANKS = (1, 2, 5, 10, 20, 50, 100)


class LoadProfile(BaseModel):
    """Targets of a synthetic load, fitted on one or more real samples."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    datasets: list[str]
    sample_events: int
    sample_users: int
    sample_items: int
    sample_sessions: int
    sample_categories: int
    sample_brands: int
    span_seconds: float
    sessions_per_second: float
    user_exponent_observed: float
    user_exponent: float
    events_per_user: float
    item_exponent_observed: float
    item_exponent: float
    item_top_shares: dict[int, float]
    category_exponent: float
    brand_exponent: float
    brand_share: float
    price_share: float
    log_price_mean: float
    log_price_between_sd: float
    log_price_within_sd: float
    session_length_weights: list[float]
    gap_quantiles_seconds: list[float]
    cart_per_click: float
    purchase_after_cart: float
    direct_purchase_per_click: float
    repeat_click: float
    same_category: float

    @property
    def mean_session_length(self) -> float:
        """Return the mean events per session of the length distribution."""
        return sum(
            length * weight
            for length, weight in enumerate(self.session_length_weights, start=1)
        )


def fit_profile(datasets: Sequence[Dataset]) -> LoadProfile:
    """Fit a load profile on the events and items of ``datasets``.

    Ids of different datasets are kept apart by prefixing them with the
    dataset name, so pooling two samples never merges their users or items.

    Raises:
        ValueError: the datasets hold no events.
    """
    sample = _Sample()
    for dataset in datasets:
        sample.add(dataset)
    if not sample.events:
        names = ", ".join(dataset.name for dataset in datasets)
        raise ValueError(f"datasets {names!r} hold no events to fit a profile on")
    return sample.profile([dataset.name for dataset in datasets])


class _Sample:
    """Counters accumulated over the datasets, turned into a profile at the end."""

    def __init__(self) -> None:
        self.events = 0
        self.span_seconds = 0.0
        self.user_sessions: Counter[str] = Counter()
        self.user_events: Counter[str] = Counter()
        self.item_events: Counter[str] = Counter()
        self.category_of: dict[str, str] = {}
        self.brand_of: dict[str, str] = {}
        self.log_prices: dict[str, float] = {}
        self.sessions: dict[str, list[Event]] = defaultdict(list)

    def add(self, dataset: Dataset) -> None:
        if not dataset.events:
            return
        prefix = f"{dataset.name}:"
        self.events += len(dataset.events)
        self.span_seconds += max(
            1.0, (dataset.end_time - dataset.start_time).total_seconds()
        )
        for item in dataset.items:
            item_id = prefix + item.item_id
            if item.category_id is not None:
                self.category_of[item_id] = prefix + item.category_id
            if item.brand:
                self.brand_of[item_id] = prefix + item.brand
            if item.price is not None and item.price > 0:
                self.log_prices[item_id] = math.log(item.price)
        for event in dataset.events:
            user_id = prefix + event.user_id
            session_id = prefix + (event.session_id or f"user:{event.user_id}")
            if session_id not in self.sessions:
                self.user_sessions[user_id] += 1
            self.user_events[user_id] += 1
            self.item_events[prefix + event.item_id] += 1
            self.sessions[session_id].append(
                event.model_copy(update={"item_id": prefix + event.item_id})
            )

    def profile(self, names: list[str]) -> LoadProfile:
        funnel = _funnel(self.sessions.values())
        locality = _locality(self.sessions.values(), self.category_of)
        prices = _price_spread(self.log_prices, self.category_of)
        total = sum(self.item_events.values())
        ranked = [count for _, count in self.item_events.most_common()]
        user_exponent = power_law_exponent(self.user_sessions.values())
        item_exponent = power_law_exponent(ranked)
        return LoadProfile(
            datasets=names,
            sample_events=self.events,
            sample_users=len(self.user_events),
            sample_items=len(self.item_events),
            sample_sessions=len(self.sessions),
            sample_categories=len(set(self.category_of.values())),
            sample_brands=len(set(self.brand_of.values())),
            span_seconds=self.span_seconds,
            sessions_per_second=len(self.sessions) / self.span_seconds,
            user_exponent_observed=user_exponent,
            user_exponent=debiased_exponent(
                user_exponent, len(self.sessions), len(self.user_sessions)
            ),
            events_per_user=self.events / len(self.user_events),
            item_exponent_observed=item_exponent,
            item_exponent=debiased_exponent(item_exponent, total, len(ranked)),
            item_top_shares={
                rank: ranked[rank - 1] / total
                for rank in _TOP_SHARE_RANKS
                if rank <= len(ranked)
            },
            category_exponent=_catalog_exponent(self.category_of),
            brand_exponent=_catalog_exponent(self.brand_of),
            brand_share=len(self.brand_of) / max(1, len(self.item_events)),
            price_share=len(self.log_prices) / max(1, len(self.item_events)),
            log_price_mean=prices[0],
            log_price_between_sd=prices[1],
            log_price_within_sd=prices[2],
            session_length_weights=_length_weights(self.sessions.values()),
            gap_quantiles_seconds=_gap_quantiles(self.sessions.values()),
            cart_per_click=funnel[0],
            purchase_after_cart=funnel[1],
            direct_purchase_per_click=funnel[2],
            repeat_click=locality[0],
            same_category=locality[1],
        )


def _catalog_exponent(group_of: dict[str, str]) -> float:
    """Return the debiased exponent of items per group (category or brand)."""
    sizes = Counter(group_of.values())
    observed = power_law_exponent(sizes.values())
    return debiased_exponent(observed, len(group_of), len(sizes))


def _length_weights(sessions: Iterable[list[Event]]) -> list[float]:
    lengths = Counter(min(len(events), MAX_SESSION_LENGTH) for events in sessions)
    longest = max(lengths)
    total = sum(lengths.values())
    return [lengths[length] / total for length in range(1, longest + 1)]


def _gap_quantiles(sessions: Iterable[list[Event]]) -> list[float]:
    gaps = [
        (later.event_time - earlier.event_time).total_seconds()
        for events in sessions
        for earlier, later in zip(events, events[1:], strict=False)
    ]
    if len(gaps) < 2:
        # A sample of one-event sessions has no gaps, so one minute is used.
        return [60.0] * GAP_QUANTILES
    cuts = statistics.quantiles(gaps, n=GAP_QUANTILES - 1, method="inclusive")
    return [min(gaps), *cuts, max(gaps)]


def _funnel(sessions: Iterable[list[Event]]) -> tuple[float, float, float]:
    """Return cart adds per click, purchases after a cart add, direct purchases."""
    clicks = carts = carts_bought = direct = 0
    for events in sessions:
        carted: set[str] = set()
        bought_after_cart: set[str] = set()
        for event in events:
            if event.event_type is EventType.CLICK:
                clicks += 1
            elif event.event_type is EventType.CART_ADD:
                carts += 1
                carted.add(event.item_id)
            elif event.item_id in carted and event.item_id not in bought_after_cart:
                bought_after_cart.add(event.item_id)
                carts_bought += 1
            else:
                direct += 1
    return (
        carts / max(1, clicks),
        carts_bought / max(1, carts),
        direct / max(1, clicks),
    )


def _locality(
    sessions: Iterable[list[Event]], category_of: dict[str, str]
) -> tuple[float, float]:
    """Return the repeat-click share and the same-category share of new clicks."""
    later_clicks = repeats = new_clicks = same = 0
    for events in sessions:
        seen: set[str] = set()
        previous: str | None = None
        for event in events:
            if event.event_type is not EventType.CLICK:
                continue
            if previous is not None:
                later_clicks += 1
                if event.item_id in seen:
                    repeats += 1
                else:
                    category = category_of.get(event.item_id)
                    if category is not None and category_of.get(previous) is not None:
                        new_clicks += 1
                        same += category == category_of[previous]
            seen.add(event.item_id)
            previous = event.item_id
    return repeats / max(1, later_clicks), same / max(1, new_clicks)


def _price_spread(
    log_prices: dict[str, float], category_of: dict[str, str]
) -> tuple[float, float, float]:
    """Return the mean log price and its between- and within-category spread."""
    if len(log_prices) < 2:
        return (math.log(50.0), 0.0, 0.0)
    by_category: dict[str, list[float]] = defaultdict(list)
    for item_id, value in log_prices.items():
        by_category[category_of.get(item_id, "")].append(value)
    means = [statistics.fmean(values) for values in by_category.values()]
    within = [
        value - statistics.fmean(values)
        for values in by_category.values()
        for value in values
    ]
    between = statistics.pstdev(means) if len(means) > 1 else 0.0
    return (statistics.fmean(log_prices.values()), between, statistics.pstdev(within))
