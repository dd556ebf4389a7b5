from __future__ import annotations

import itertools
import statistics
from collections import Counter, defaultdict

import pytest

from schemas.events import Event, EventType
from schemas.validation import parse_event
from services.bench.generator import (
    MAX_USERS_PER_SESSION,
    SYNTHETIC_START,
    ShopSize,
    SyntheticShop,
    event_index,
    generate_events,
)
from services.bench.profile import LoadProfile, fit_profile
from services.replay.datasets import AdapterSummary, Dataset

EVENTS = 60_000


@pytest.fixture(scope="module")
def shop(rees46_profile: LoadProfile) -> SyntheticShop:
    return SyntheticShop(rees46_profile, ShopSize.scaled(rees46_profile, EVENTS), 5)


@pytest.fixture(scope="module")
def events(shop: SyntheticShop) -> list[Event]:
    return list(generate_events(shop, EVENTS, seed=5))


@pytest.fixture(scope="module")
def refitted(shop: SyntheticShop, events: list[Event]) -> LoadProfile:
    dataset = Dataset("synthetic", events, list(shop.items()), AdapterSummary("x"))
    return fit_profile([dataset])


def test_shop_is_larger_than_sample(
    shop: SyntheticShop, rees46_profile: LoadProfile
) -> None:
    assert shop.size.users > rees46_profile.sample_users
    assert shop.size.items > rees46_profile.sample_items


def test_events_pass_parse_event(events: list[Event]) -> None:
    rejected = [
        result
        for result in (
            parse_event(event.model_dump_json().encode()) for event in events
        )
        if not isinstance(result, Event)
    ]

    assert rejected == []


def test_events_in_time_order(events: list[Event]) -> None:
    times = [event.event_time for event in events]

    assert times == sorted(times)
    assert times[0] >= SYNTHETIC_START


def test_event_ids_count_from_zero(events: list[Event]) -> None:
    assert [event_index(event.event_id) for event in events] == list(range(EVENTS))


def test_generated_items_are_in_catalog(
    shop: SyntheticShop, events: list[Event]
) -> None:
    catalog = {item.item_id for item in shop.items()}

    assert {event.item_id for event in events} <= catalog


def test_same_seed_gives_same_events(shop: SyntheticShop) -> None:
    first = list(generate_events(shop, 500, seed=9))
    second = list(generate_events(shop, 500, seed=9))
    other = list(generate_events(shop, 500, seed=10))

    assert first == second
    assert first != other


def test_stream_can_continue_past_its_first_slice(shop: SyntheticShop) -> None:
    stream = generate_events(shop, 300, seed=9)
    head = list(itertools.islice(stream, 100))
    tail = list(stream)

    assert head + tail == list(generate_events(shop, 300, seed=9))


def test_item_popularity_matches_profile(
    refitted: LoadProfile, rees46_profile: LoadProfile
) -> None:
    assert refitted.item_exponent == pytest.approx(
        rees46_profile.item_exponent, abs=0.06
    )


def test_funnel_rates_match_profile(
    refitted: LoadProfile, rees46_profile: LoadProfile
) -> None:
    assert refitted.cart_per_click == pytest.approx(
        rees46_profile.cart_per_click, rel=0.15
    )
    assert refitted.purchase_after_cart == pytest.approx(
        rees46_profile.purchase_after_cart, rel=0.15
    )
    assert refitted.direct_purchase_per_click == pytest.approx(
        rees46_profile.direct_purchase_per_click, rel=0.15
    )


def test_locality_matches_profile(
    refitted: LoadProfile, rees46_profile: LoadProfile
) -> None:
    assert refitted.repeat_click == pytest.approx(rees46_profile.repeat_click, abs=0.03)
    assert refitted.same_category == pytest.approx(
        rees46_profile.same_category, abs=0.03
    )


def test_session_lengths_match_profile(
    events: list[Event], rees46_profile: LoadProfile
) -> None:
    # Sessions still open when the stream ends are cut short, so only those
    # that started in the first half of the stream's event time count.
    middle = events[0].event_time + (events[-1].event_time - events[0].event_time) / 2
    lengths: Counter[str] = Counter()
    starts: dict[str, object] = {}
    for event in events:
        starts.setdefault(event.session_id or "", event.event_time)
        lengths[event.session_id or ""] += 1
    early = [n for session, n in lengths.items() if starts[session] < middle]
    expected = rees46_profile.session_length_weights

    # Funnel steps follow their click, which adds about 2 % to the mean.
    assert statistics.fmean(early) == pytest.approx(
        rees46_profile.mean_session_length, rel=0.06
    )
    assert sum(n == 1 for n in early) / len(early) == pytest.approx(
        expected[0], abs=0.03
    )


def test_users_keep_sample_activity(
    events: list[Event], rees46_profile: LoadProfile
) -> None:
    per_user: defaultdict[str, int] = defaultdict(int)
    for event in events:
        per_user[event.user_id] += 1

    assert EVENTS / len(per_user) == pytest.approx(
        rees46_profile.events_per_user, rel=0.1
    )


def test_purchases_have_order_id(events: list[Event]) -> None:
    purchases = [e for e in events if e.event_type is EventType.PURCHASE]

    assert purchases
    assert all(e.order_id and e.quantity == 1 for e in purchases)


@pytest.mark.parametrize(
    ("user_share", "exponent"),
    [(0.999, 0.5), (0.1, 1.4)],
    ids=["one-user-per-session", "steep"],
)
def test_user_count_stays_bounded(
    rees46_profile: LoadProfile, user_share: float, exponent: float
) -> None:
    profile = rees46_profile.model_copy(
        update={
            "sample_users": round(rees46_profile.sample_sessions * user_share),
            "user_exponent": exponent,
        }
    )

    size = ShopSize.scaled(profile, 1_000_000)

    sessions = round(1_000_000 / profile.mean_session_length)
    assert size.users <= MAX_USERS_PER_SESSION * sessions
