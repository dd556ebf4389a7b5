from __future__ import annotations

import pytest

from schemas.events import EventType
from services.common.errors import InvalidSettingsError
from services.common.settings import load_settings, masked_settings
from services.scorer.settings import CandidateSettings, ScorerSettings


def test_scorer_settings_read_nested_blocks_from_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_SCORER_RULES__MAX_PER_CATEGORY", "3")
    monkeypatch.setenv("CARTWHEEL_SCORER_SURFACES__PROMOTION_EVENTS", '["cart_add"]')
    monkeypatch.setenv("CARTWHEEL_SCORER_WEIGHTS__OBJECTIVE", "expected_value")

    settings = load_settings(ScorerSettings)

    assert settings.rules.max_per_category == 3
    assert settings.surfaces.promotion_events == frozenset({EventType.CART_ADD})
    assert settings.weights.objective == "expected_value"


def test_scorer_settings_reject_zero_items_per_category(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_SCORER_RULES__MAX_PER_CATEGORY", "0")

    with pytest.raises(InvalidSettingsError, match="MAX_PER_CATEGORY"):
        load_settings(ScorerSettings)


def test_scorer_settings_reject_zero_model_load_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_SCORER_MODEL_LOAD_TIMEOUT_SECONDS", "0")

    with pytest.raises(
        InvalidSettingsError, match="CARTWHEEL_SCORER_MODEL_LOAD_TIMEOUT_SECONDS='0'"
    ):
        load_settings(ScorerSettings)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "WEIGHTS__RANKER_BLEND",
            "2",
            "a number from 0 to 1: weight of the trained ranker's cart and "
            "purchase probabilities against the heuristic's",
        ),
        ("WEIGHTS__CLICK", "-1", "a number of at least 0: weight of p(click)"),
        ("SURFACES__PRODUCTS_SIZE", "0", "an integer from 1 to 200: slate size"),
        ("RULES__DIVERSITY", "random", "none, per_category or mmr"),
    ],
)
def test_scorer_settings_give_expected_form_of_nested_field(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(f"CARTWHEEL_SCORER_{variable}", value)

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(ScorerSettings)

    message = str(caught.value)
    assert f"CARTWHEEL_SCORER_{variable}={value!r}: " in message
    assert "expected " in message
    assert message.endswith(expected)


@pytest.mark.parametrize("value", ["abc", "", "nan", "3601"])
def test_scorer_settings_state_range_of_model_load_timeout(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CARTWHEEL_SCORER_MODEL_LOAD_TIMEOUT_SECONDS", value)

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(ScorerSettings)

    assert (
        "expected a number above 0 and at most 3600: seconds that loading one "
        "announced ranker version may take"
    ) in str(caught.value)


def test_promotion_events_logged_in_sorted_order() -> None:
    settings = ScorerSettings()

    logged = masked_settings(settings)["surfaces"]["promotion_events"]

    assert logged == ["cart_add", "click", "purchase"]


def test_source_weight_descriptions_mention_zero() -> None:
    fields = CandidateSettings.model_fields

    undescribed = [
        name
        for name in fields
        if name.endswith("_weight")
        and "or 0 to turn the source off" not in str(fields[name].description)
    ]

    assert undescribed == []


_PRODUCTS_SOURCES = (
    "COVISITATION_WEIGHT",
    "SESSION_KNN_WEIGHT",
    "CATEGORY_TRENDING_WEIGHT",
    "TRENDING_WEIGHT",
)


def test_scorer_settings_reject_every_products_source_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in _PRODUCTS_SOURCES:
        monkeypatch.setenv(f"CARTWHEEL_SCORER_CANDIDATES__{name}", "0")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(ScorerSettings)

    lines = str(caught.value).splitlines()
    assert [line.split("=")[0] for line in lines] == [
        f"invalid setting CARTWHEEL_SCORER_CANDIDATES__{name}"
        for name in _PRODUCTS_SOURCES
    ]
    assert all("products slates are always empty" in line for line in lines)


def test_scorer_settings_accept_one_products_source_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in _PRODUCTS_SOURCES[1:]:
        monkeypatch.setenv(f"CARTWHEEL_SCORER_CANDIDATES__{name}", "0")

    settings = load_settings(ScorerSettings)

    assert settings.candidates.covisitation_weight == 1.0


def test_scorer_settings_reject_both_bundles_sources_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_SCORER_CANDIDATES__CO_CART_WEIGHT", "0")
    monkeypatch.setenv("CARTWHEEL_SCORER_CANDIDATES__CO_PURCHASE_WEIGHT", "0.0")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(ScorerSettings)

    assert str(caught.value).splitlines() == [
        f"invalid setting CARTWHEEL_SCORER_CANDIDATES__{name}={value!r}: expected "
        "the co_cart or co_purchase weight above 0, because with both at 0 "
        "bundles slates are always empty"
        for name, value in (("CO_CART_WEIGHT", "0"), ("CO_PURCHASE_WEIGHT", "0.0"))
    ]


def test_scorer_settings_reject_category_trending_without_categories_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("COVISITATION_WEIGHT", "SESSION_KNN_WEIGHT", "TRENDING_WEIGHT"):
        monkeypatch.setenv(f"CARTWHEEL_SCORER_CANDIDATES__{name}", "0")
    monkeypatch.setenv("CARTWHEEL_SCORER_CANDIDATES__TOP_CATEGORIES", "0")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(ScorerSettings)

    lines = str(caught.value).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "invalid setting CARTWHEEL_SCORER_CANDIDATES__COVISITATION_WEIGHT='0'",
        "invalid setting CARTWHEEL_SCORER_CANDIDATES__SESSION_KNN_WEIGHT='0'",
        "invalid setting CARTWHEEL_SCORER_CANDIDATES__CATEGORY_TRENDING_WEIGHT "
        "(not set, default 0.4)",
        "invalid setting CARTWHEEL_SCORER_CANDIDATES__TRENDING_WEIGHT='0'",
        "invalid setting CARTWHEEL_SCORER_CANDIDATES__TOP_CATEGORIES='0'",
    ]
    assert all(
        line.endswith(
            "products slates are always empty; "
            "CARTWHEEL_SCORER_CANDIDATES__CATEGORY_TRENDING_WEIGHT counts as 0 "
            "while CARTWHEEL_SCORER_CANDIDATES__TOP_CATEGORIES is 0"
        )
        for line in lines
    )


def test_no_categories_with_other_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("SESSION_KNN_WEIGHT", "TRENDING_WEIGHT"):
        monkeypatch.setenv(f"CARTWHEEL_SCORER_CANDIDATES__{name}", "0")
    monkeypatch.setenv("CARTWHEEL_SCORER_CANDIDATES__TOP_CATEGORIES", "0")

    settings = load_settings(ScorerSettings)

    assert settings.candidates.top_categories == 0


def test_zero_category_weight_skips_categories(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in _PRODUCTS_SOURCES:
        monkeypatch.setenv(f"CARTWHEEL_SCORER_CANDIDATES__{name}", "0")
    monkeypatch.setenv("CARTWHEEL_SCORER_CANDIDATES__TOP_CATEGORIES", "0")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(ScorerSettings)

    assert "TOP_CATEGORIES" not in str(caught.value)
