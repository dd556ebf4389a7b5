"""Warnings about variables under a settings prefix that name no setting."""

from __future__ import annotations

import logging

import pytest
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common import setting_names
from services.common.errors import InvalidSettingsError
from services.common.setting_names import (
    UnknownKey,
    UnknownVariable,
    known_variables,
    misplaced_variables,
    unknown_block_fields,
    unknown_json_keys,
    unknown_variables,
    variables_under_value,
)
from services.common.settings import KafkaSettings, load_settings


class _Limits(BaseModel):
    max_items: int = 10


class _Paging(BaseModel):
    page_size: int = 20
    max_items: int = 100


class _NamesServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CARTWHEEL_NAMESVC_", env_nested_delimiter="__", frozen=True
    )

    batch_size: int = 10
    limits: _Limits = Field(default_factory=_Limits)
    paging: _Paging = Field(default_factory=_Paging)
    sizes: dict[str, int] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)


class _NamesServiceExtraSettings(BaseSettings):
    """Another class with a longer prefix that starts with the service's."""

    model_config = SettingsConfigDict(env_prefix="CARTWHEEL_NAMESVC_EXTRA_")

    level: int = 1


class _NamesServiceStageSettings(BaseSettings):
    """Another class that reads one more field under the service's prefix."""

    model_config = SettingsConfigDict(env_prefix="CARTWHEEL_NAMESVC_")

    stage: str = "default"


@pytest.fixture(autouse=True)
def fresh_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(setting_names, "_reported", set())


def test_known_variables_include_nested_names() -> None:
    known = known_variables(_NamesServiceSettings)

    assert "CARTWHEEL_NAMESVC_BATCH_SIZE" in known.names
    assert "CARTWHEEL_NAMESVC_LIMITS__MAX_ITEMS" in known.names
    assert "CARTWHEEL_NAMESVC_KAFKA__BOOTSTRAP" in known.names
    assert "CARTWHEEL_KAFKA_BOOTSTRAP" in known.names
    assert "CARTWHEEL_NAMESVC_STAGE" in known.names
    assert known.is_known("CARTWHEEL_NAMESVC_SIZES__ANY_KEY")


@pytest.mark.parametrize(
    ("variable", "closest", "block"),
    [
        ("CARTWHEEL_NAMESVC_BATCH_SIZ", "CARTWHEEL_NAMESVC_BATCH_SIZE", None),
        ("cartwheel_namesvc_batch_siz", "CARTWHEEL_NAMESVC_BATCH_SIZE", None),
        (
            "CARTWHEEL_NAMESVC_LIMITS__MAX_ITEM",
            "CARTWHEEL_NAMESVC_LIMITS__MAX_ITEMS",
            "CARTWHEEL_NAMESVC_LIMITS",
        ),
        ("CARTWHEEL_NAMESVC_LIMITS__NOPE", None, "CARTWHEEL_NAMESVC_LIMITS"),
        (
            "CARTWHEEL_NAMESVC_LIMIT__MAX_ITEMS",
            "CARTWHEEL_NAMESVC_LIMITS__MAX_ITEMS",
            None,
        ),
        ("CARTWHEEL_KAFKA_BOOTSTRAPP", "CARTWHEEL_KAFKA_BOOTSTRAP", None),
        ("CARTWHEEL_KAFKA_SSL_CA", "CARTWHEEL_KAFKA_SSL_CA_LOCATION", None),
        ("CARTWHEEL_NAMESVC_WHOLLY_UNRELATED", None, None),
    ],
)
def test_unknown_variable_is_reported_with_closest(
    variable: str, closest: str | None, block: str | None
) -> None:
    found = unknown_variables(_NamesServiceSettings, {variable: "1"})

    assert found == [UnknownVariable(variable, closest, block)]


@pytest.mark.parametrize(
    ("variable", "closest", "block"),
    [
        (
            "CARTWHEEL_NAMESVC_LIMITS__PAGE_SIZE",
            "CARTWHEEL_NAMESVC_PAGING__PAGE_SIZE",
            "CARTWHEEL_NAMESVC_LIMITS",
        ),
        (
            "CARTWHEEL_NAMESVC_PAGING__BATCH_SIZE",
            "CARTWHEEL_NAMESVC_BATCH_SIZE",
            "CARTWHEEL_NAMESVC_PAGING",
        ),
        (
            "CARTWHEEL_NAMESVC_LIMITS__STAGE",
            "CARTWHEEL_NAMESVC_STAGE",
            "CARTWHEEL_NAMESVC_LIMITS",
        ),
    ],
)
def test_field_in_wrong_block_is_misplaced(
    variable: str, closest: str, block: str
) -> None:
    found = unknown_variables(_NamesServiceSettings, {variable: "1"})

    assert found == [UnknownVariable(variable, closest, block, True, True)]


@pytest.mark.parametrize(
    ("variable", "closest"),
    [
        ("CARTWHEEL_NAMESVC_PAGE_SIZE", "CARTWHEEL_NAMESVC_PAGING__PAGE_SIZE"),
        ("cartwheel_namesvc_max_items", "CARTWHEEL_NAMESVC_LIMITS__MAX_ITEMS"),
    ],
)
def test_block_field_outside_its_block_is_misplaced(
    variable: str, closest: str
) -> None:
    found = misplaced_variables(_NamesServiceSettings, {variable: "1"})

    assert found == [UnknownVariable(variable, closest, None, False, True)]


@pytest.mark.parametrize(
    ("variable", "closest", "block"),
    [
        (
            "CARTWHEEL_NAMESVC_LIMITS__PAGE_SIZ",
            "CARTWHEEL_NAMESVC_PAGING__PAGE_SIZE",
            "CARTWHEEL_NAMESVC_LIMITS",
        ),
        (
            "CARTWHEEL_NAMESVC_PAGING__BOOTSTRAP",
            "CARTWHEEL_NAMESVC_KAFKA__BOOTSTRAP",
            "CARTWHEEL_NAMESVC_PAGING",
        ),
    ],
)
def test_field_near_other_block_suggests_its_real_variable(
    variable: str, closest: str, block: str
) -> None:
    found = unknown_variables(_NamesServiceSettings, {variable: "1"})

    assert found == [UnknownVariable(variable, closest, block, True)]


@pytest.mark.parametrize(
    "variable",
    [
        # A field of the Kafka block, which is also read as CARTWHEEL_KAFKA_*.
        "CARTWHEEL_NAMESVC_BOOTSTRAP",
        "CARTWHEEL_NAMESVC_PAGING__BOOTSTRAP",
        # Misspelled, so the setting meant is a guess.
        "CARTWHEEL_NAMESVC_PAGE_SIZ",
        "CARTWHEEL_NAMESVC_LIMITS__PAGE_SIZ",
        # Another service's variables.
        "CARTWHEEL_NAMESVC_EXTRA_PAGE_SIZE",
        "CARTWHEEL_OTHERSVC_PAGE_SIZE",
    ],
)
def test_uncertain_or_foreign_variable_is_not_misplaced(variable: str) -> None:
    assert misplaced_variables(_NamesServiceSettings, {variable: "1"}) == []


def test_close_own_field_wins_over_other_block() -> None:
    variable = "CARTWHEEL_NAMESVC_PAGING__MAX_ITEM"

    found = unknown_variables(_NamesServiceSettings, {variable: "1"})

    assert found == [
        UnknownVariable(
            variable, "CARTWHEEL_NAMESVC_PAGING__MAX_ITEMS", "CARTWHEEL_NAMESVC_PAGING"
        )
    ]


@pytest.mark.parametrize(
    "variable", ["CARTWHEEL_NAMESVC_LIMITS__PAGING", "CARTWHEEL_NAMESVC_LIMITS__SIZES"]
)
def test_block_variable_never_suggested_for_field(variable: str) -> None:
    found = unknown_variables(_NamesServiceSettings, {variable: "1"})

    assert found == [UnknownVariable(variable, None, "CARTWHEEL_NAMESVC_LIMITS")]


@pytest.mark.parametrize(
    "variable",
    [
        "CARTWHEEL_NAMESVC_BATCH_SIZE",
        "cartwheel_namesvc_batch_size",
        "CARTWHEEL_NAMESVC_STAGE",
        "CARTWHEEL_NAMESVC_EXTRA_LEVEL",
        "CARTWHEEL_NAMESVC_EXTRA_BOGUS",
        "CARTWHEEL_OTHERSVC_BOGUS",
        "CARTWHEEL_API_SIGNALS__BOGUS",
        "PATH",
    ],
)
def test_known_or_foreign_variable_is_not_reported(variable: str) -> None:
    assert unknown_variables(_NamesServiceSettings, {variable: "1"}) == []


def test_load_settings_warns_once_per_variable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CARTWHEEL_NAMESVC_BATCH_SIZ", "5")

    with caplog.at_level(logging.WARNING, logger="services.common.setting_names"):
        first = load_settings(_NamesServiceSettings)
        load_settings(_NamesServiceSettings)

    warnings = [r.getMessage() for r in caplog.records]
    assert first.batch_size == 10
    assert warnings == [
        "unknown setting ignored variable=CARTWHEEL_NAMESVC_BATCH_SIZ "
        "closest_valid=CARTWHEEL_NAMESVC_BATCH_SIZE"
    ]


def test_misspelled_signal_stops_with_value_masked(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from services.api.settings import ApiSettings

    monkeypatch.setenv("CARTWHEEL_API_SIGNALS__BOGUS", "hunter2hunter2")

    with (
        caplog.at_level(logging.WARNING, logger="services.common.setting_names"),
        pytest.raises(InvalidSettingsError) as caught,
    ):
        load_settings(ApiSettings)

    assert str(caught.value) == (
        "invalid setting CARTWHEEL_API_SIGNALS__BOGUS='**********': the block "
        "CARTWHEEL_API_SIGNALS has no such setting, so this name would be "
        "ignored; expected CARTWHEEL_API_SIGNALS__ followed by one of "
        "IS_ENABLED, CHECKPOINT_DIR, CHECKPOINT_KEY, INSTANCE_NAME, "
        "RELOAD_INTERVAL_SECONDS"
    )
    assert caplog.records == []


def test_misspelled_field_of_block_stops_with_closest(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from services.scorer.settings import ScorerSettings

    monkeypatch.setenv("CARTWHEEL_SCORER_WEIGHTS__RANKER_BLND", "0.5")

    with (
        caplog.at_level(logging.WARNING, logger="services.common.setting_names"),
        pytest.raises(InvalidSettingsError) as caught,
    ):
        load_settings(ScorerSettings)

    assert str(caught.value) == (
        "invalid setting CARTWHEEL_SCORER_WEIGHTS__RANKER_BLND='0.5': the block "
        "CARTWHEEL_SCORER_WEIGHTS has no such setting, so this name would be "
        "ignored; did you mean CARTWHEEL_SCORER_WEIGHTS__RANKER_BLEND?"
    )
    assert caplog.records == []


def test_unknown_field_of_block_stops_with_its_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_NAMESVC_PAGING__NOPE", "1")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(_NamesServiceSettings)

    assert str(caught.value) == (
        "invalid setting CARTWHEEL_NAMESVC_PAGING__NOPE='1': the block "
        "CARTWHEEL_NAMESVC_PAGING has no such setting, so this name would be "
        "ignored; expected CARTWHEEL_NAMESVC_PAGING__ followed by one of "
        "PAGE_SIZE, MAX_ITEMS"
    )


def test_unknown_field_of_block_keeps_its_spelling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("cartwheel_namesvc_limits__max_item", "1")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(_NamesServiceSettings)

    assert str(caught.value).startswith(
        "invalid setting cartwheel_namesvc_limits__max_item='1': "
    )
    assert str(caught.value).endswith(
        "did you mean CARTWHEEL_NAMESVC_LIMITS__MAX_ITEMS?"
    )


def test_unknown_field_of_block_in_block_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.api.settings import ApiSettings

    monkeypatch.setenv("CARTWHEEL_API_SCORER__WEIGHTS__RANKER_BLND", "0.5")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(ApiSettings)

    assert str(caught.value) == (
        "invalid setting CARTWHEEL_API_SCORER__WEIGHTS__RANKER_BLND='0.5': the "
        "block CARTWHEEL_API_SCORER__WEIGHTS has no such setting, so this name "
        "would be ignored; did you mean "
        "CARTWHEEL_API_SCORER__WEIGHTS__RANKER_BLEND?"
    )


def test_unknown_kafka_field_stops_once_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARTWHEEL_NAMESVC_KAFKA__SASL_PASWORD", "hunter2")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(_NamesServiceSettings)

    assert str(caught.value) == (
        "invalid setting CARTWHEEL_NAMESVC_KAFKA__SASL_PASWORD='**********': the "
        "block CARTWHEEL_NAMESVC_KAFKA has no such setting, so this name would "
        "be ignored; did you mean CARTWHEEL_NAMESVC_KAFKA__SASL_PASSWORD?"
    )


@pytest.mark.parametrize(
    "variable",
    [
        "CARTWHEEL_NAMESVC_PAGNG__PAGE_SIZE",
        "CARTWHEEL_NAMESVC_BATCH_SIZ",
        "CARTWHEEL_NAMESVC_PAGING_PAGE_SIZE",
    ],
)
def test_unknown_name_outside_blocks_only_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, variable: str
) -> None:
    monkeypatch.setenv(variable, "5")

    with caplog.at_level(logging.WARNING, logger="services.common.setting_names"):
        settings = load_settings(_NamesServiceSettings)

    assert settings.paging.page_size == 20
    assert [record.getMessage().split()[3] for record in caplog.records] == [
        f"variable={variable}"
    ]


@pytest.mark.parametrize(
    ("variable", "closest", "block"),
    [
        (
            "CARTWHEEL_NAMESVC_LIMITS__MAX_ITEM",
            "CARTWHEEL_NAMESVC_LIMITS__MAX_ITEMS",
            "CARTWHEEL_NAMESVC_LIMITS",
        ),
        ("CARTWHEEL_NAMESVC_PAGING__NOPE", None, "CARTWHEEL_NAMESVC_PAGING"),
        (
            "CARTWHEEL_NAMESVC_KAFKA__BOOTSTRP",
            "CARTWHEEL_NAMESVC_KAFKA__BOOTSTRAP",
            "CARTWHEEL_NAMESVC_KAFKA",
        ),
    ],
)
def test_unknown_block_fields_are_found_with_closest(
    variable: str, closest: str | None, block: str
) -> None:
    found = unknown_block_fields(_NamesServiceSettings, {variable: "1"})

    assert found == [UnknownVariable(variable, closest, block)]


@pytest.mark.parametrize(
    "variable",
    [
        # Misplaced, so misplaced_variables reports it.
        "CARTWHEEL_NAMESVC_LIMITS__PAGE_SIZE",
        # Outside any block of this class.
        "CARTWHEEL_NAMESVC_BATCH_SIZ",
        "CARTWHEEL_NAMESVC_PAGNG__PAGE_SIZE",
        "CARTWHEEL_OTHERSVC_PAGING__NOPE",
        # Read into a single value, which then fails.
        "CARTWHEEL_NAMESVC_LIMITS__MAX_ITEMS__X",
    ],
)
def test_unknown_block_fields_leave_other_names_out(variable: str) -> None:
    assert unknown_block_fields(_NamesServiceSettings, {variable: "1"}) == []


def test_setting_under_two_spellings_is_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CARTWHEEL_NAMESVC_BATCH_SIZE", "5")
    monkeypatch.setenv("cartwheel_namesvc_batch_size", "3")

    with caplog.at_level(logging.WARNING, logger="services.common.setting_names"):
        settings = load_settings(_NamesServiceSettings)

    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "setting set under more than one spelling variables="
        "CARTWHEEL_NAMESVC_BATCH_SIZE,cartwheel_namesvc_batch_size "
        "read=cartwheel_namesvc_batch_size"
    ]
    assert settings.batch_size == 3


def test_field_near_other_block_stops_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.scorer.settings import ScorerSettings

    monkeypatch.setenv("CARTWHEEL_SCORER_CANDIDATES__RANKER_CLIK_BLEND", "0.5")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(ScorerSettings)

    assert str(caught.value) == (
        "invalid setting CARTWHEEL_SCORER_CANDIDATES__RANKER_CLIK_BLEND='0.5': "
        "the block CARTWHEEL_SCORER_CANDIDATES has no such setting, so this name "
        "would be ignored; did you mean "
        "CARTWHEEL_SCORER_WEIGHTS__RANKER_CLICK_BLEND, outside this block?"
    )


@pytest.mark.parametrize(
    ("variable", "problem", "correct"),
    [
        (
            "CARTWHEEL_SCORER_TRENDING_WEIGHT",
            "the setting is inside a block",
            "CARTWHEEL_SCORER_CANDIDATES__TRENDING_WEIGHT",
        ),
        (
            "CARTWHEEL_SCORER_WEIGHTS__COVISITATION_WEIGHT",
            "the block CARTWHEEL_SCORER_WEIGHTS has no such setting",
            "CARTWHEEL_SCORER_CANDIDATES__COVISITATION_WEIGHT",
        ),
        (
            "CARTWHEEL_SCORER_CANDIDATES__ITEM_CACHE_SIZE",
            "the block CARTWHEEL_SCORER_CANDIDATES has no such setting",
            "CARTWHEEL_SCORER_ITEM_CACHE_SIZE",
        ),
    ],
)
def test_misplaced_scorer_setting_stops_with_right_name(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variable: str,
    problem: str,
    correct: str,
) -> None:
    from services.scorer.settings import ScorerSettings

    monkeypatch.setenv(variable, "2")

    with (
        caplog.at_level(logging.WARNING, logger="services.common.setting_names"),
        pytest.raises(InvalidSettingsError) as caught,
    ):
        load_settings(ScorerSettings)

    assert str(caught.value) == (
        f"invalid setting {variable}='2': {problem}, so this name would be "
        f"ignored; set {correct} instead"
    )
    assert caplog.records == []


def test_misplaced_setting_is_listed_with_invalid_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.scorer.settings import ScorerSettings

    monkeypatch.setenv("CARTWHEEL_SCORER_TRENDING_WEIGHT", "0.5")
    monkeypatch.setenv("CARTWHEEL_SCORER_RULES__MAX_PER_CATEGORY", "0")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(ScorerSettings)

    assert [line.split("=")[0] for line in str(caught.value).splitlines()] == [
        "invalid setting CARTWHEEL_SCORER_RULES__MAX_PER_CATEGORY",
        "invalid setting CARTWHEEL_SCORER_TRENDING_WEIGHT",
    ]


def test_scorer_loads_beside_other_services_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.scorer.settings import ScorerSettings

    monkeypatch.setenv("CARTWHEEL_API_SCORER__CANDIDATES__TRENDING_WEIGHT", "0.5")
    monkeypatch.setenv("CARTWHEEL_HOTPATH_BATCH_SIZE", "100")
    monkeypatch.setenv("CARTWHEEL_LEARNER_TRENDING_WEIGHT", "0.5")

    settings = load_settings(ScorerSettings)

    assert settings.candidates.trending_weight == 0.02


def test_misplaced_secret_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.api.settings import ApiSettings

    monkeypatch.setenv("CARTWHEEL_API_CHECKPOINT_KEY", "hunter2hunter2")

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(ApiSettings)

    assert "hunter2" not in str(caught.value)
    assert "CARTWHEEL_API_SIGNALS__CHECKPOINT_KEY instead" in str(caught.value)


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ('{"max_item": 3}', [("max_item", "max_items")]),
        ('{"MAX_ITEMS": 3, "nope": 1}', [("nope", None)]),
        ('{"max_items": 3}', []),
        ("[1]", []),
        ("{not json", []),
    ],
)
def test_unknown_json_keys_are_found_with_closest(
    value: str, found: list[tuple[str, str | None]]
) -> None:
    variable = "CARTWHEEL_NAMESVC_LIMITS"

    keys = unknown_json_keys(_NamesServiceSettings, {variable: value})

    assert keys == [UnknownKey(variable, key, closest) for key, closest in found]


def test_unknown_json_keys_of_nested_block_are_found() -> None:
    from services.api.settings import ApiSettings

    environ = {"CARTWHEEL_API_SCORER": '{"weights": {"ranker_blnd": 0.5}}'}

    keys = unknown_json_keys(ApiSettings, environ)

    assert keys == [
        UnknownKey("CARTWHEEL_API_SCORER", "weights.ranker_blnd", "ranker_blend")
    ]


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ('{"ranker_blnd": 0.5}', 'did you mean "ranker_blend"?'),
        (
            '{"bogus": 0.5}',
            "'cartwheel config' and docs/configuration.md list the block's settings",
        ),
    ],
)
def test_json_block_unknown_key_stops(
    monkeypatch: pytest.MonkeyPatch, value: str, hint: str
) -> None:
    from services.scorer.settings import ScorerSettings

    monkeypatch.setenv("CARTWHEEL_SCORER_WEIGHTS", value)

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(ScorerSettings)

    key = value.split('"')[1]
    assert str(caught.value) == (
        f"invalid setting CARTWHEEL_SCORER_WEIGHTS={value!r}: the key "
        f'"{key}" names no setting of this block, so it would be ignored; {hint}'
    )


def test_unknown_key_of_settings_block_is_reported_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.hotpath.settings import HotPathSettings

    monkeypatch.setenv("CARTWHEEL_HOTPATH_TOPICS", '{"event": "clicks"}')

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(HotPathSettings)

    assert str(caught.value) == (
        'invalid setting CARTWHEEL_HOTPATH_TOPICS=\'{"event": "clicks"}\': '
        'the key "event" names no setting of this block, so it would be '
        'ignored; did you mean "events"?'
    )


def test_unknown_key_of_block_with_secret_is_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.hotpath.settings import HotPathSettings

    monkeypatch.setenv("CARTWHEEL_HOTPATH_KAFKA", '{"sasl_pasword": "hunter2"}')

    with pytest.raises(InvalidSettingsError) as caught:
        load_settings(HotPathSettings)

    assert "hunter2" not in str(caught.value)
    assert 'did you mean "sasl_password"?' in str(caught.value)


@pytest.mark.parametrize(
    "variable",
    [
        "CARTWHEEL_NAMESVC_LIMITS__MAX_ITEMS__X",
        "cartwheel_namesvc_limits__max_items__x",
        "CARTWHEEL_NAMESVC_KAFKA__BOOTSTRAP__X",
        "CARTWHEEL_NAMESVC_TAGS__0",
    ],
)
def test_variable_read_into_single_value_is_not_reported(variable: str) -> None:
    assert unknown_variables(_NamesServiceSettings, {variable: "1"}) == []


@pytest.mark.parametrize(
    ("variable", "closest"),
    [
        (
            "CARTWHEEL_NAMESVC_LIMITS__MAX_ITEMS__X",
            "CARTWHEEL_NAMESVC_LIMITS__MAX_ITEMS",
        ),
        ("CARTWHEEL_NAMESVC_TAGS__0", "CARTWHEEL_NAMESVC_TAGS"),
    ],
)
def test_variable_under_set_single_value_is_reported(
    variable: str, closest: str
) -> None:
    environ = {closest: "1", variable: "1"}

    found = unknown_variables(_NamesServiceSettings, environ)

    assert [(part.variable, part.closest) for part in found] == [(variable, closest)]


def test_top_level_scalar_extension_is_reported() -> None:
    variable = "CARTWHEEL_NAMESVC_BATCH_SIZE__X"

    found = unknown_variables(_NamesServiceSettings, {variable: "1"})

    assert found == [UnknownVariable(variable, "CARTWHEEL_NAMESVC_BATCH_SIZE", None)]


def test_variables_under_value_names_closest_valid() -> None:
    from services.scorer.settings import ScorerSettings

    environ = {
        "CARTWHEEL_SCORER_CANDIDATES__TRENDING__WEIGHT": "1",
        "CARTWHEEL_SCORER_CANDIDATES__TRENDING_WEIGHT": "1",
        "CARTWHEEL_SCORER_CANDIDATES__TRENDNG__WEIGHT": "1",
    }

    found = variables_under_value(
        ScorerSettings, "CARTWHEEL_SCORER_CANDIDATES__TRENDING", environ
    )

    assert found == [
        UnknownVariable(
            "CARTWHEEL_SCORER_CANDIDATES__TRENDING__WEIGHT",
            "CARTWHEEL_SCORER_CANDIDATES__TRENDING_WEIGHT",
            "CARTWHEEL_SCORER_CANDIDATES",
        )
    ]


def test_extra_delimiter_gets_error_without_ignored_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from services.scorer.settings import ScorerSettings

    monkeypatch.setenv("CARTWHEEL_SCORER_CANDIDATES__TRENDING__WEIGHT", "1")

    with (
        caplog.at_level(logging.WARNING, logger="services.common.setting_names"),
        pytest.raises(InvalidSettingsError, match="TRENDING__WEIGHT='1'"),
    ):
        load_settings(ScorerSettings)

    assert caplog.records == []
