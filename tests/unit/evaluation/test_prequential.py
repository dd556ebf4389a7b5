from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.events import Event
from schemas.recommendations import Slate
from services.evaluation.prequential import PrequentialEvaluator, evaluate_streams
from services.evaluation.results import SYSTEM_NAME
from services.evaluation.settings import EvaluationSettings

MakeEvent = Callable[..., Event]
MakeSlate = Callable[..., Slate]


def test_system_scores_match_hand_computed_ranks(
    make_event: MakeEvent, make_slate: MakeSlate, settings: EvaluationSettings
) -> None:
    e1 = make_event("e1", "u1", "a", 0)
    e2 = make_event("e2", "u1", "b", 1)
    e3 = make_event("e3", "u1", "c", 2, event_type="cart_add")
    slates = [make_slate(e1, ["x", "b", "y"]), make_slate(e2, ["c"])]

    result = evaluate_streams([e1, e2, e3], slates, settings=settings)
    scores = result.ranking[SYSTEM_NAME]

    assert scores[1].count == 2
    assert scores[1].hit_rate == pytest.approx(0.5)
    assert scores[2].hit_rate == pytest.approx(1.0)
    assert scores[3].mrr == pytest.approx((1 / 2 + 1) / 2)
    assert scores[3].ndcg == pytest.approx((1 / math.log2(3) + 1) / 2)


def test_scores_split_by_type_of_next_event(
    make_event: MakeEvent, make_slate: MakeSlate, settings: EvaluationSettings
) -> None:
    e1 = make_event("e1", "u1", "a", 0)
    e2 = make_event("e2", "u1", "b", 1)
    e3 = make_event("e3", "u1", "c", 2, event_type="cart_add")
    slates = [make_slate(e1, ["x", "b"]), make_slate(e2, ["c"])]

    result = evaluate_streams([e1, e2, e3], slates, settings=settings)
    by_type = result.by_event_type[SYSTEM_NAME]

    assert by_type["click"][1].hit_rate == 0.0
    assert by_type["click"][2].hit_rate == 1.0
    assert by_type["cart_add"][1].hit_rate == 1.0
    assert by_type["purchase"][1].count == 0


def test_user_with_one_event_is_not_scored(
    make_event: MakeEvent, make_slate: MakeSlate, settings: EvaluationSettings
) -> None:
    only = make_event("e1", "u1", "a", 0)

    result = evaluate_streams([only], [make_slate(only, ["b"])], settings=settings)

    assert result.inputs.single_event_users == 1
    assert result.inputs.scored_events == 0
    assert result.ranking[SYSTEM_NAME][3].hit_rate is None


def test_empty_slate_counts_as_miss(
    make_event: MakeEvent, make_slate: MakeSlate, settings: EvaluationSettings
) -> None:
    e1 = make_event("e1", "u1", "a", 0)
    e2 = make_event("e2", "u1", "b", 1)

    result = evaluate_streams([e1, e2], [make_slate(e1, [])], settings=settings)

    assert result.inputs.targets_with_own_slate == 1
    assert result.ranking[SYSTEM_NAME][3].hit_rate == 0.0
    assert result.beyond_accuracy[SYSTEM_NAME].novelty is None


def test_event_without_slate_uses_users_latest_slate(
    make_event: MakeEvent, make_slate: MakeSlate, settings: EvaluationSettings
) -> None:
    e1 = make_event("e1", "u1", "a", 0)
    e2 = make_event("e2", "u1", "b", 1)
    e3 = make_event("e3", "u1", "c", 2)

    result = evaluate_streams([e1, e2, e3], [make_slate(e1, ["c"])], settings=settings)

    assert result.inputs.targets_with_own_slate == 1
    assert result.inputs.targets_with_stale_slate == 1
    assert result.ranking[SYSTEM_NAME][1].hit_rate == pytest.approx(0.5)


def test_missing_slate_counts_as_miss(
    make_event: MakeEvent, settings: EvaluationSettings
) -> None:
    events = [make_event("e1", "u1", "a", 0), make_event("e2", "u1", "b", 1)]

    result = evaluate_streams(events, [], settings=settings)

    assert result.inputs.targets_without_slate == 1
    assert result.ranking[SYSTEM_NAME][3].hit_rate == 0.0


def test_duplicate_events_and_slates_are_dropped(
    make_event: MakeEvent, make_slate: MakeSlate, settings: EvaluationSettings
) -> None:
    e1 = make_event("e1", "u1", "a", 0)
    e2 = make_event("e2", "u1", "b", 1)
    late = make_slate(e1, ["z"], latency_ms=50.0, recommendation_id="late")
    early = make_slate(e1, ["b"], latency_ms=5.0, recommendation_id="early")

    result = evaluate_streams([e1, e2, e1], [late, early], settings=settings)

    assert result.inputs.duplicate_events == 1
    assert result.inputs.duplicate_slates == 1
    assert result.ranking[SYSTEM_NAME][1].hit_rate == 1.0


def test_baseline_list_is_fixed_at_its_trigger_event(
    make_event: MakeEvent, settings: EvaluationSettings
) -> None:
    # b becomes the most popular item only after u1's list was made.
    events = [
        make_event("e1", "u1", "a", 0),
        make_event("e2", "u2", "b", 1),
        make_event("e3", "u3", "b", 2),
        make_event("e4", "u1", "b", 3),
    ]

    result = evaluate_streams(events, [], settings=settings)

    assert result.ranking["most_popular"][3].hit_rate == 0.0


def test_baseline_learns_from_other_users_before_listing(
    make_event: MakeEvent, settings: EvaluationSettings
) -> None:
    events = [
        make_event("e1", "u1", "a", 0, session_id="s1"),
        make_event("e2", "u1", "b", 1, session_id="s1"),
        make_event("e3", "u2", "a", 2, session_id="s2"),
        make_event("e4", "u2", "b", 3, session_id="s2"),
    ]

    result = evaluate_streams(events, [], settings=settings)
    covisitation = result.ranking["covisitation"][1]

    # u1's b is a miss (nothing co-visited yet); u2's b is a hit at rank 1.
    assert covisitation.count == 2
    assert covisitation.hit_rate == pytest.approx(0.5)


def test_baselines_exclude_trigger_item(
    make_event: MakeEvent, settings: EvaluationSettings
) -> None:
    events = [make_event("e1", "u1", "a", 0), make_event("e2", "u1", "a", 1)]

    result = evaluate_streams(events, [], settings=settings)

    assert result.inputs.repeat_targets == 1
    assert result.ranking["most_popular"][3].hit_rate == 0.0


def test_baselines_keep_trigger_item_when_allowed(
    make_event: MakeEvent, settings: EvaluationSettings
) -> None:
    events = [make_event("e1", "u1", "a", 0), make_event("e2", "u1", "a", 1)]
    keep_trigger = settings.model_copy(update={"exclude_trigger_item": False})

    result = evaluate_streams(events, [], settings=keep_trigger)

    assert result.ranking["most_popular"][1].hit_rate == 1.0


def test_same_input_in_another_order_gives_same_result(
    make_event: MakeEvent, make_slate: MakeSlate, settings: EvaluationSettings
) -> None:
    rng = random.Random(3)
    events = [
        make_event(f"e{i}", f"u{i % 4}", f"i{rng.randrange(6)}", i, session_id=None)
        for i in range(40)
    ]
    slates = [make_slate(e, [f"i{rng.randrange(6)}" for _ in range(2)]) for e in events]
    shuffled_slates = slates[:]
    rng.shuffle(shuffled_slates)

    first = evaluate_streams(events, slates, settings=settings).to_dict()
    second = evaluate_streams(events, shuffled_slates, settings=settings).to_dict()

    assert first == second


def test_bundles_slate_scores_next_other_conversion(
    make_event: MakeEvent, make_slate: MakeSlate, settings: EvaluationSettings
) -> None:
    cart_add = make_event("e1", "u1", "a", 0, event_type="cart_add")
    events = [
        cart_add,
        make_event("e2", "u1", "r", 1),
        make_event("e3", "u1", "a", 2, event_type="purchase"),
        make_event("e4", "u1", "q", 3, event_type="purchase"),
    ]
    bundle = make_slate(cart_add, ["p", "q"], surface="bundles")

    result = evaluate_streams(events, [bundle], settings=settings)
    bundles = result.by_surface["bundles"]

    assert bundles[1].hit_rate == 0.0
    assert bundles[2].hit_rate == 1.0
    assert bundles[2].mrr == pytest.approx(0.5)


def test_promotions_slate_hits_eligible_item(
    make_event: MakeEvent,
    make_slate: MakeSlate,
    make_item: Callable[..., Any],
    make_promotion: Callable[..., Any],
    settings: EvaluationSettings,
) -> None:
    trigger = make_event("e1", "u1", "a", 0)
    events = [trigger, make_event("e2", "u1", "boot", 1)]
    catalog = [
        make_item("boot", "shoes"),
        make_promotion("hats-sale", category_ids=["hats"]),
        make_promotion("shoes-sale", category_ids=["shoes"]),
    ]
    slate = make_slate(
        trigger,
        ["cap", "sandal"],
        surface="promotions",
        promotion_ids=["hats-sale", "shoes-sale"],
    )

    result = evaluate_streams(events, [slate], catalog, settings=settings)

    assert result.by_surface["promotions"][1].hit_rate == 0.0
    assert result.by_surface["promotions"][2].hit_rate == 1.0


def test_promotion_outside_its_window_does_not_hit(
    make_event: MakeEvent,
    make_slate: MakeSlate,
    make_item: Callable[..., Any],
    make_promotion: Callable[..., Any],
    settings: EvaluationSettings,
) -> None:
    trigger = make_event("e1", "u1", "a", 0)
    target = make_event("e2", "u1", "boot", 1)
    ended = make_promotion(
        "old",
        starts_at=target.event_time.replace(year=2020),
        ends_at=target.event_time.replace(year=2021),
    )
    slate = make_slate(trigger, ["x"], surface="promotions", promotion_ids=["old"])

    result = evaluate_streams(
        [trigger, target], [slate], [make_item("boot"), ended], settings=settings
    )

    assert result.by_surface["promotions"][3].hit_rate == 0.0


@pytest.mark.parametrize(("next_type", "hit_rate"), [("cart_add", 1.0), ("click", 0.0)])
def test_reviews_slate_hits_on_conversion_of_reviewed_item(
    make_event: MakeEvent,
    make_slate: MakeSlate,
    settings: EvaluationSettings,
    next_type: str,
    hit_rate: float,
) -> None:
    click = make_event("e1", "u1", "k", 0)
    events = [click, make_event("e2", "u1", "k", 1, event_type=next_type)]
    reviews = make_slate(click, ["k", "k"], surface="reviews", context_item_id="k")

    result = evaluate_streams(events, [reviews], settings=settings)

    assert result.by_surface["reviews"][1].hit_rate == hit_rate


def test_slate_of_unknown_event_is_counted_as_orphan(
    make_event: MakeEvent, make_slate: MakeSlate, settings: EvaluationSettings
) -> None:
    unread = make_event("gone", "u1", "a", 0)

    result = evaluate_streams([], [make_slate(unread, ["b"])], settings=settings)

    assert result.inputs.orphan_slates == 1


def test_throughput_is_estimated_from_generated_at_spread(
    make_event: MakeEvent, make_slate: MakeSlate, settings: EvaluationSettings
) -> None:
    events = [make_event(f"e{i}", "u1", "a", i) for i in range(3)]
    slates = [make_slate(e, ["b"]) for e in events]

    result = evaluate_streams(events, slates, settings=settings)

    # Three trigger events published over two minutes.
    assert result.throughput_source == "generated_at"
    assert result.throughput_events_per_second == pytest.approx(3 / 120)


def test_throughput_ignores_one_wrong_clock(
    make_event: MakeEvent, make_slate: MakeSlate, settings: EvaluationSettings
) -> None:
    events = [make_event(f"e{i}", f"u{i}", "a", i) for i in range(200)]
    slates = [make_slate(event, ["b"]) for event in events[:-1]]
    stray = events[-1].event_time + timedelta(days=3650)
    slates.append(make_slate(events[-1], ["b"], generated_at=stray))

    result = evaluate_streams(events, slates, settings=settings)

    # One event a minute; the stray slate alone would stretch the span to years.
    assert result.throughput_events_per_second == pytest.approx(1 / 60, rel=0.01)


def test_throughput_of_few_slates_ignores_wrong_clocks(
    make_event: MakeEvent, make_slate: MakeSlate, settings: EvaluationSettings
) -> None:
    events = [make_event(f"e{i}", f"u{i}", "a", i) for i in range(21)]
    slates = [make_slate(event, ["b"]) for event in events[1:-1]]
    first_year = datetime(1, 1, 1, tzinfo=UTC)
    last_year = datetime(9999, 1, 1, tzinfo=UTC)
    slates.append(make_slate(events[0], ["b"], generated_at=first_year))
    slates.append(make_slate(events[-1], ["b"], generated_at=last_year))

    result = evaluate_streams(events, slates, settings=settings)

    assert result.throughput_events_per_second == pytest.approx(1 / 60, rel=0.1)


def test_throughput_from_caller_is_reported_as_given(
    make_event: MakeEvent, settings: EvaluationSettings
) -> None:
    result = evaluate_streams(
        [], [], settings=settings, throughput_events_per_second=1234.5
    )

    assert result.throughput_source == "caller"
    assert result.throughput_events_per_second == 1234.5


def test_latency_percentiles_cover_every_surface(
    make_event: MakeEvent, make_slate: MakeSlate, settings: EvaluationSettings
) -> None:
    event = make_event("e1", "u1", "a", 0, event_type="cart_add")
    slates = [
        make_slate(event, ["b"], latency_ms=10.0),
        make_slate(event, ["c"], surface="bundles", latency_ms=30.0),
    ]

    result = evaluate_streams([event], slates, settings=settings)

    assert result.latency["all"].count == 2
    assert result.latency["all"].p50_ms == pytest.approx(20.0)
    assert result.latency["bundles"].p99_ms == pytest.approx(30.0)
    assert sum(result.latency_histogram.counts["products"]) == 1


def test_verdict_reports_system_beating_baselines(
    make_event: MakeEvent, make_slate: MakeSlate, settings: EvaluationSettings
) -> None:
    events = [make_event("e1", "u1", "a", 0), make_event("e2", "u1", "b", 1)]

    result = evaluate_streams(events, [make_slate(events[0], ["b"])], settings=settings)

    assert result.verdict.cutoff == 3
    assert result.verdict.beats_every_baseline is True
    assert result.verdict.winning_baselines == {"hit_rate": [], "mrr": []}


def test_events_without_session_id_split_at_inactivity_gap(
    make_event: MakeEvent, settings: EvaluationSettings
) -> None:
    evaluator = PrequentialEvaluator(settings)
    for event in [
        make_event("e1", "u1", "a", 0),
        make_event("e2", "u1", "b", 10),
        make_event("e3", "u1", "c", 100),
        make_event("e4", "u2", "d", 0, session_id="given"),
    ]:
        evaluator.add_event(event)

    ordered = sorted(evaluator._events, key=lambda e: (e.timestamp, e.event_id))
    keys = [e.session_key for e in evaluator._sessionized(ordered)]

    assert keys == ["u1#0", "given", "u1#0", "u1#1"]


def test_timeline_splits_scored_events_into_buckets(
    make_event: MakeEvent, settings: EvaluationSettings
) -> None:
    events = [make_event(f"e{i}", "u1", f"i{i}", i) for i in range(5)]

    result = evaluate_streams(events, [], settings=settings)

    assert result.timeline.bucket_sizes == [2, 2]
    assert set(result.timeline.hit_rates) == set(result.recommenders)


def test_new_item_scores_skip_repeated_items(
    make_event: MakeEvent, make_slate: MakeSlate, settings: EvaluationSettings
) -> None:
    e1 = make_event("e1", "u1", "a", 0)
    e2 = make_event("e2", "u1", "a", 1)
    e3 = make_event("e3", "u1", "b", 2)
    slates = [make_slate(e1, ["x"]), make_slate(e2, ["b"])]

    result = evaluate_streams([e1, e2, e3], slates, settings=settings)
    new_items = result.ranking_new_items[SYSTEM_NAME][1]

    assert result.ranking[SYSTEM_NAME][1].hit_rate == pytest.approx(0.5)
    assert new_items.count == 1
    assert new_items.hit_rate == 1.0


def test_events_before_score_from_train_but_are_not_scored(
    make_event: MakeEvent, make_slate: MakeSlate, settings: EvaluationSettings
) -> None:
    events = [
        make_event("e1", "u1", "a", 0),
        make_event("e2", "u2", "b", 1),
        make_event("e3", "u1", "b", 2),
        make_event("e4", "u1", "c", 3, event_type="cart_add"),
        make_event("e5", "u1", "b", 4),
    ]
    slates = [make_slate(e, ["b"]) for e in events]
    slates.append(make_slate(events[3], ["b"], surface="bundles"))
    later = settings.model_copy(update={"score_from": events[3].event_time})

    result = evaluate_streams(events, slates, settings=later)

    assert result.inputs.scored_events == 2
    assert result.ranking[SYSTEM_NAME][1].hit_rate == pytest.approx(0.5)
    assert result.ranking["most_popular"][1].hit_rate == pytest.approx(0.5)
    assert result.by_surface["bundles"][1].count == 0


def test_target_read_before_slate_counts_as_lookahead(
    make_event: MakeEvent, make_slate: MakeSlate, settings: EvaluationSettings
) -> None:
    e1 = make_event("e1", "u1", "a", 0)
    e2 = make_event("e2", "u1", "b", 1)
    e3 = make_event("e3", "u1", "c", 2)
    # e2's slate records that the system read e2 at e2's event time, a second before
    # it published e1's slate. e3 is read after e2's slate came out.
    late = make_slate(e1, ["b"], generated_at=e2.event_time + timedelta(seconds=1))
    slates = [late, make_slate(e2, ["c"]), make_slate(e3, ["d"], latency_ms=0.0)]

    result = evaluate_streams([e1, e2, e3], slates, settings=settings)
    unseen = result.ranking_without_lookahead[SYSTEM_NAME][1]

    assert result.inputs.lookahead_targets == 1
    assert unseen.count == 1
    assert unseen.hit_rate == 1.0
    assert result.verdict_without_lookahead.scored_lists == 1


def test_target_without_own_slate_is_not_lookahead(
    make_event: MakeEvent, make_slate: MakeSlate, settings: EvaluationSettings
) -> None:
    e1 = make_event("e1", "u1", "a", 0)
    e2 = make_event("e2", "u1", "b", 1)
    late = make_slate(e1, ["b"], generated_at=e2.event_time + timedelta(hours=1))

    result = evaluate_streams([e1, e2], [late], settings=settings)

    assert result.inputs.lookahead_targets == 0


def test_scores_split_by_model_version_of_slate(
    make_event: MakeEvent, make_slate: MakeSlate, settings: EvaluationSettings
) -> None:
    events = [make_event(f"e{i}", "u1", f"i{i}", i) for i in range(3)]
    slates = [
        make_slate(events[0], ["i1"], model_version="heuristic-1"),
        make_slate(events[1], ["x"], model_version="ranker-2"),
        make_slate(events[2], ["y"], model_version="ranker-2"),
    ]

    result = evaluate_streams(events, slates, settings=settings)

    assert result.model_versions == {"heuristic-1": 1, "ranker-2": 2}
    assert result.by_model_version["heuristic-1"][1].hit_rate == 1.0
    assert result.by_model_version["ranker-2"][1].count == 1
    assert result.by_model_version["ranker-2"][1].hit_rate == 0.0


def test_evaluate_reports_skipped_records_of_topics_that_had_some(
    settings: EvaluationSettings,
) -> None:
    evaluator = PrequentialEvaluator(settings)

    result = evaluator.evaluate(skipped_records={"slates": 11, "events": 0})

    assert result.inputs.skipped_records == {"slates": 11}
