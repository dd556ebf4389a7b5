from __future__ import annotations

from schemas.features import ItemAttributes
from schemas.recommendations import CandidateSource
from services.scorer.rules import (
    RankedCandidate,
    RuleContext,
    ScoredCandidates,
    apply_rules,
    excluded_items,
    is_excluded,
    select_rows,
)
from services.scorer.settings import RuleSettings


def _candidate(item_id: str, score: float) -> RankedCandidate:
    return RankedCandidate(item_id, score, (0.1, 0.01, 0.001), CandidateSource.TRENDING)


def _ids(kept: list[RankedCandidate]) -> list[str]:
    return [candidate.item_id for candidate in kept]


# Rule settings with only the rule under test switched on.
NO_EXTRAS = RuleSettings(diversity="none", new_item_slots=0)


def test_apply_rules_drops_trigger_item() -> None:
    kept = apply_rules(
        [_candidate("t", 9.0), _candidate("a", 1.0)], RuleContext("t"), NO_EXTRAS, 10
    )

    assert _ids(kept) == ["a"]


def test_apply_rules_keeps_trigger_item_when_rule_is_off() -> None:
    settings = NO_EXTRAS.model_copy(update={"exclude_trigger": False})

    kept = apply_rules([_candidate("t", 9.0)], RuleContext("t"), settings, 10)

    assert _ids(kept) == ["t"]


def test_apply_rules_drops_purchased_items() -> None:
    context = RuleContext("t", purchased={"bought": 1.0})

    kept = apply_rules(
        [_candidate("bought", 9.0), _candidate("a", 1.0)], context, NO_EXTRAS, 10
    )

    assert _ids(kept) == ["a"]


def test_apply_rules_keeps_purchased_consumables_when_allowed() -> None:
    context = RuleContext(
        "t",
        purchased={"milk": 1.0},
        attributes={"milk": ItemAttributes("milk", is_consumable=True)},
    )

    kept = apply_rules([_candidate("milk", 9.0)], context, NO_EXTRAS, 10)

    assert _ids(kept) == ["milk"]


def test_apply_rules_drops_purchased_consumables_when_not_allowed() -> None:
    context = RuleContext(
        "t",
        purchased={"milk": 1.0},
        attributes={"milk": ItemAttributes("milk", is_consumable=True)},
    )
    settings = NO_EXTRAS.model_copy(update={"allow_consumables": False})

    kept = apply_rules([_candidate("milk", 9.0)], context, settings, 10)

    assert kept == []


def test_apply_rules_drops_out_of_stock_items() -> None:
    context = RuleContext(
        "t",
        attributes={
            "gone": ItemAttributes("gone", stock=0),
            "unknown": ItemAttributes("unknown", stock=None),
        },
    )

    kept = apply_rules(
        [_candidate("gone", 9.0), _candidate("unknown", 1.0)], context, NO_EXTRAS, 10
    )

    assert _ids(kept) == ["unknown"]


def test_apply_rules_keeps_best_score_of_duplicates() -> None:
    kept = apply_rules(
        [_candidate("a", 1.0), _candidate("a", 5.0), _candidate("b", 2.0)],
        RuleContext("t"),
        NO_EXTRAS,
        10,
    )

    assert _ids(kept) == ["a", "b"]
    assert kept[0].score == 5.0


def test_apply_rules_caps_items_per_category() -> None:
    attributes = {
        item_id: ItemAttributes(item_id, category_id=category)
        for item_id, category in [("a", "x"), ("b", "x"), ("c", "x"), ("d", "y")]
    }
    candidates = [
        _candidate(item_id, 10.0 - index) for index, item_id in enumerate("abcd")
    ]
    settings = NO_EXTRAS.model_copy(
        update={"diversity": "per_category", "max_per_category": 2}
    )

    kept = apply_rules(
        candidates, RuleContext("t", attributes=attributes), settings, 10
    )

    assert _ids(kept) == ["a", "b", "d"]


def test_apply_rules_mmr_moves_other_category_up() -> None:
    attributes = {
        item_id: ItemAttributes(item_id, category_id=category)
        for item_id, category in [("a", "x"), ("b", "x"), ("c", "y")]
    }
    candidates = [_candidate("a", 1.0), _candidate("b", 0.9), _candidate("c", 0.8)]
    settings = NO_EXTRAS.model_copy(update={"diversity": "mmr", "mmr_lambda": 0.5})

    kept = apply_rules(candidates, RuleContext("t", attributes=attributes), settings, 3)

    assert _ids(kept) == ["a", "c", "b"]


def test_apply_rules_reserves_slot_for_new_item() -> None:
    candidates = [
        _candidate(item_id, 10.0 - index) for index, item_id in enumerate("abcn")
    ]
    views = {"a": 100.0, "b": 100.0, "c": 100.0, "n": 0.0}
    settings = NO_EXTRAS.model_copy(
        update={"new_item_slots": 1, "new_item_max_views": 5.0}
    )

    kept = apply_rules(candidates, RuleContext("t", item_views=views), settings, 3)

    assert _ids(kept) == ["a", "b", "n"]


def test_apply_rules_returns_at_most_size_items() -> None:
    candidates = [_candidate(str(index), float(index)) for index in range(50)]

    kept = apply_rules(candidates, RuleContext("t"), NO_EXTRAS, 20)

    assert len(kept) == 20
    assert kept[0].item_id == "49"


def test_excluded_items_lists_every_rule_of_the_context() -> None:
    context = RuleContext(
        "t",
        purchased={"bought": 1.0, "milk": 1.0},
        attributes={
            "milk": ItemAttributes("milk", is_consumable=True),
            "gone": ItemAttributes("gone", stock=0),
            "kept": ItemAttributes("kept", stock=3),
        },
        excluded=frozenset({"cart"}),
    )

    excluded = excluded_items(context, NO_EXTRAS)

    assert excluded == {"t", "cart", "bought", "gone"}


def test_is_excluded_keeps_every_item_when_rules_are_off() -> None:
    context = RuleContext(
        "t",
        purchased={"bought": 1.0},
        attributes={"gone": ItemAttributes("gone", stock=0)},
    )
    settings = NO_EXTRAS.model_copy(
        update={
            "exclude_trigger": False,
            "exclude_purchased": False,
            "exclude_out_of_stock": False,
        }
    )

    flags = [
        is_excluded(item_id, context, settings) for item_id in ("t", "bought", "gone")
    ]

    assert flags == [False, False, False]


def test_scored_candidates_order_breaks_ties_by_id() -> None:
    scored = ScoredCandidates.of(
        [_candidate("b", 1.0), _candidate("c", 2.0), _candidate("a", 1.0)]
    )

    assert scored.order == [1, 2, 0]


def test_scored_candidates_rebuild_ranked_candidate() -> None:
    candidate = RankedCandidate(
        "a", 2.0, (0.5, 0.2, 0.1), CandidateSource.CO_CART, affinity=0.3
    )

    assert ScoredCandidates.of([candidate]).candidate(0) == candidate


def test_select_rows_keeps_slate_order() -> None:
    scored = ScoredCandidates.of(
        [_candidate("t", 9.0), _candidate("a", 1.0), _candidate("b", 5.0)]
    )
    rows = [row for row in scored.order if scored.item_ids[row] != "t"]

    kept = select_rows(scored, rows, RuleContext("t"), NO_EXTRAS, 10)

    assert kept == [2, 1]


def test_apply_rules_cap_at_size_keeps_best_items() -> None:
    attributes = {
        item_id: ItemAttributes(item_id, category_id="x") for item_id in "abc"
    }
    candidates = [
        _candidate(item_id, 10.0 - index) for index, item_id in enumerate("abc")
    ]
    settings = NO_EXTRAS.model_copy(
        update={"diversity": "per_category", "max_per_category": 2}
    )

    kept = apply_rules(candidates, RuleContext("t", attributes=attributes), settings, 2)

    assert _ids(kept) == ["a", "b"]
