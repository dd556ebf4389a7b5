"""The feedback join in Redis: attribution, windows, dedupe and the reader."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import redis.asyncio

from schemas.events import Event, EventContext, EventType
from schemas.recommendations import CandidateSource, Slate, SlateItem, Surface
from services.common.settings import RedisSettings
from services.feedback.cli import register
from services.feedback.reader import hit_rate, outcome_counts
from services.feedback.settings import FeedbackSettings
from services.feedback.tables import Applied, Credit, FeedbackTables, Outcome

pytestmark = pytest.mark.integration

START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def settings(redis_settings: RedisSettings) -> FeedbackSettings:
    return FeedbackSettings(
        redis=redis_settings, attribution_window_seconds=600, window_seconds=300
    )


@pytest.fixture
def apply_batch(settings: FeedbackSettings) -> Iterator[Callable[..., Applied]]:
    """Return a function that applies records and returns the whole result."""
    loop = asyncio.new_event_loop()
    client = redis.asyncio.Redis.from_url(settings.redis.url.get_secret_value())
    tables = FeedbackTables(client, settings)

    def run(*records: Slate | Event) -> Applied:
        return loop.run_until_complete(tables.apply(list(records)))

    yield run
    loop.run_until_complete(tables.close())
    loop.close()


@pytest.fixture
def apply(apply_batch: Callable[..., Applied]) -> Callable[..., list[Credit]]:
    """Return a function that applies records and returns the new credits."""

    def run(*records: Slate | Event) -> list[Credit]:
        return apply_batch(*records).credits

    return run


def make_event(
    event_id: str,
    item_id: str,
    *,
    event_type: EventType = EventType.CLICK,
    user_id: str = "u1",
    seconds: float = 0.0,
    recommendation_id: str | None = None,
) -> Event:
    context = EventContext(recommendation_id=recommendation_id)
    return Event(
        event_id=event_id,
        event_type=event_type,
        user_id=user_id,
        item_id=item_id,
        event_time=START + timedelta(seconds=seconds),
        context=context if recommendation_id else None,
    )


def make_slate(
    trigger_event_id: str,
    items: list[str],
    *,
    surface: Surface = Surface.PRODUCTS,
    model_version: str = "mt-20260105-abc1234",
    user_id: str = "u1",
    generated_at: datetime = START,
    **overrides: Any,
) -> Slate:
    entries = [
        SlateItem(
            item_id=item_id,
            rank=rank,
            score=1.0 / rank,
            source=CandidateSource.COVISITATION,
            review_id=f"r-{item_id}" if surface is Surface.REVIEWS else None,
            promotion_id=f"p-{item_id}" if surface is Surface.PROMOTIONS else None,
        )
        for rank, item_id in enumerate(items, start=1)
    ]
    return Slate(
        recommendation_id=overrides.pop("recommendation_id", uuid.uuid4().hex),
        surface=surface,
        user_id=user_id,
        trigger_event_id=trigger_event_id,
        items=entries,
        model_version=model_version,
        generated_at=generated_at,
        latency_ms=3.0,
        **overrides,
    )


def outcomes(credits: list[Credit]) -> list[str]:
    return [credit.outcome.value for credit in credits]


def test_slate_counts_one_impression(apply: Callable[..., list[Credit]]) -> None:
    credits = apply(make_event("e1", "a"), make_slate("e1", ["b", "c"]))

    assert credits == [Credit("products", "mt-20260105-abc1234", Outcome.IMPRESSION)]


def test_next_event_on_slate_item_counts_hit_and_click(
    apply: Callable[..., list[Credit]],
) -> None:
    apply(make_event("e1", "a"), make_slate("e1", ["b", "c"]))

    credits = apply(make_event("e2", "c", seconds=10))

    assert outcomes(credits) == ["hit", "click"]


def test_trigger_event_itself_is_not_credited(
    apply: Callable[..., list[Credit]],
) -> None:
    credits = apply(make_event("e1", "a"), make_slate("e1", ["a", "b"]))

    assert outcomes(credits) == ["impression"]


def test_later_event_counts_outcome_but_not_hit(
    apply: Callable[..., list[Credit]],
) -> None:
    apply(make_event("e1", "a"), make_slate("e1", ["b", "c"]))

    credits = apply(
        make_event("e2", "x", seconds=5),
        make_event("e3", "b", event_type=EventType.CART_ADD, seconds=20),
    )

    assert outcomes(credits) == ["cart_add"]


def test_event_after_attribution_window_is_not_credited(
    apply: Callable[..., list[Credit]],
) -> None:
    apply(make_event("e1", "a"), make_slate("e1", ["b"]))

    credits = apply(make_event("e2", "b", seconds=601))

    assert credits == []


def test_slate_arriving_after_later_events_gets_same_credits(
    apply: Callable[..., list[Credit]],
) -> None:
    apply(
        make_event("e1", "a"),
        make_event("e2", "b", seconds=5),
        make_event("e3", "b", event_type=EventType.PURCHASE, seconds=9),
    )

    credits = apply(make_slate("e1", ["b", "c"]))

    assert outcomes(credits) == ["impression", "hit", "click", "purchase"]


def test_slate_arriving_before_its_trigger_event_is_joined(
    apply: Callable[..., list[Credit]],
) -> None:
    apply(make_slate("e1", ["b"]))

    credits = apply(make_event("e1", "a"), make_event("e2", "b", seconds=3))

    assert outcomes(credits) == ["hit", "click"]


def test_each_outcome_counts_once_per_slate(
    apply: Callable[..., list[Credit]],
) -> None:
    apply(make_event("e1", "a"), make_slate("e1", ["b", "c"]))

    credits = apply(make_event("e2", "b", seconds=1), make_event("e3", "c", seconds=2))

    assert outcomes(credits) == ["hit", "click"]


def test_redelivered_records_change_nothing(
    apply_batch: Callable[..., Applied],
) -> None:
    event = make_event("e1", "a")
    slate = make_slate("e1", ["b"])
    later = make_event("e2", "b", seconds=1)
    first = apply_batch(event, slate, later)

    again = apply_batch(event, slate, later)

    assert first.duplicates == 0
    assert again.credits == []
    assert again.duplicates == 3


def test_recommendation_id_credits_named_slate_off_its_items(
    apply: Callable[..., list[Credit]],
) -> None:
    apply(make_event("e1", "a"), make_slate("e1", ["b"], recommendation_id="rec-1"))

    credits = apply(make_event("e2", "z", seconds=4, recommendation_id="rec-1"))

    assert outcomes(credits) == ["click"]


def test_event_credits_every_surface_showing_the_item(
    apply: Callable[..., list[Credit]],
) -> None:
    apply(
        make_event("e1", "a"),
        make_slate("e1", ["b"]),
        make_slate("e1", ["b"], surface=Surface.REVIEWS, context_item_id="a"),
    )

    credits = apply(make_event("e2", "b", seconds=2))

    assert sorted((c.surface, c.outcome.value) for c in credits) == [
        ("products", "click"),
        ("products", "hit"),
        ("reviews", "click"),
        ("reviews", "hit"),
    ]


def test_users_are_joined_separately(apply: Callable[..., list[Credit]]) -> None:
    apply(make_event("e1", "a"), make_slate("e1", ["b"]))

    credits = apply(make_event("e2", "b", user_id="u2", seconds=1))

    assert credits == []


def test_outcome_counts_group_by_window_of_generated_at(
    apply: Callable[..., list[Credit]],
    settings: FeedbackSettings,
    redis_client: redis.Redis,
) -> None:
    apply(
        make_event("e1", "a"),
        make_slate("e1", ["b"], generated_at=START),
        make_event("e2", "b", seconds=1),
        make_slate("e2", ["c"], generated_at=START + timedelta(seconds=400)),
    )
    prefix = settings.redis.key_prefix

    recent = outcome_counts(redis_client, prefix, START + timedelta(seconds=300))
    everything = outcome_counts(redis_client, prefix, START)

    version = "mt-20260105-abc1234"
    assert recent == {("products", version, Outcome.IMPRESSION): 1}
    assert everything[("products", version, Outcome.IMPRESSION)] == 2
    assert everything[("products", version, Outcome.HIT)] == 1


def test_hit_rate_divides_hits_by_impressions(
    apply: Callable[..., list[Credit]],
    settings: FeedbackSettings,
    redis_client: redis.Redis,
) -> None:
    apply(
        make_event("e1", "a"),
        make_slate("e1", ["b"]),
        make_event("e2", "b", seconds=1),
        make_slate("e2", ["x"]),
        make_event("e3", "c", seconds=2),
    )

    rate = hit_rate(
        redis_client,
        settings.redis.key_prefix,
        "products",
        "mt-20260105-abc1234",
        START - timedelta(hours=1),
    )

    assert rate == pytest.approx(0.5)


def test_hit_rate_is_none_without_impressions(
    settings: FeedbackSettings, redis_client: redis.Redis
) -> None:
    rate = hit_rate(redis_client, settings.redis.key_prefix, "products", "none", START)

    assert rate is None


def test_hit_rate_rejects_naive_since(
    settings: FeedbackSettings, redis_client: redis.Redis
) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        hit_rate(
            redis_client,
            settings.redis.key_prefix,
            "products",
            "v",
            datetime(2026, 1, 1),
        )


def test_report_command_prints_counts_and_hit_rate(
    apply: Callable[..., list[Credit]],
    settings: FeedbackSettings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = datetime.now(UTC)
    apply(
        make_event("e1", "a"),
        make_slate("e1", ["b"], generated_at=now),
        make_event("e2", "b", seconds=1),
    )
    monkeypatch.setenv("CARTWHEEL_REDIS_URL", settings.redis.url.get_secret_value())
    monkeypatch.setenv("CARTWHEEL_REDIS_KEY_PREFIX", settings.redis.key_prefix)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())

    args = parser.parse_args(["feedback", "report", "--hours", "1"])
    exit_code = args.handler(args)

    lines = capsys.readouterr().out.splitlines()
    assert exit_code == 0
    assert lines[0].split("\t")[-1] == "hit_rate"
    assert lines[1].split("\t") == [
        "products",
        "mt-20260105-abc1234",
        "1",
        "1",
        "1",
        "0",
        "0",
        "1.0000",
    ]
