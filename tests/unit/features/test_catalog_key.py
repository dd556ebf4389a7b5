"""Catalog keys and hot-path settings, without servers."""

from __future__ import annotations

import gc
import sys
import types
import warnings

import pytest
import redis

from services.common.errors import InvalidSettingsError
from services.features.catalog import parse_catalog_key
from services.features.errors import CatalogKeyError
from services.hotpath.__main__ import load_stages
from services.hotpath.settings import HotPathSettings


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (b"item:42", ("item", "42")),
        ("promotion:p:1", ("promotion", "p:1")),
        (b"review:r9", ("review", "r9")),
    ],
)
def test_parse_catalog_key_splits_kind_and_id(
    key: bytes | str, expected: tuple[str, str]
) -> None:
    assert parse_catalog_key(key) == expected


@pytest.mark.parametrize("key", [None, b"", b"item:", b"order:1", b"item"])
def test_parse_catalog_key_rejects_invalid_key(key: bytes | None) -> None:
    with pytest.raises(CatalogKeyError, match="expected 'item:<id>'"):
        parse_catalog_key(key)


def test_hotpath_settings_select_feature_tuning() -> None:
    settings = HotPathSettings(dedupe_size=16, max_pairs=7, user_ttl_seconds=7200)

    config = settings.feature_config()

    assert config.dedupe_size == 16
    assert config.max_pairs == 7
    assert config.user_ttl_seconds == 7200


def test_load_stages_rejects_unknown_factory() -> None:
    client = redis.Redis(host="127.0.0.1", port=1)

    with pytest.raises(InvalidSettingsError) as raised:
        load_stages(["nowhere.module:build"], HotPathSettings(), client)

    assert "CARTWHEEL_HOTPATH_STAGES" in str(raised.value)
    assert "'nowhere.module:build'" in str(raised.value)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("builtins:len", "cannot take the settings and a client"),
        ("math:pi", "is not callable"),
        ("operator:is_", "returned a bool without name, process, close"),
        ("builtins:dict", "cannot take the settings and a client"),
        ("builtins:max", "cannot take the settings and a client"),
    ],
)
def test_load_stages_rejects_unusable_factory(spec: str, problem: str) -> None:
    client = redis.Redis(host="127.0.0.1", port=1)

    with pytest.raises(InvalidSettingsError) as raised:
        load_stages([spec], HotPathSettings(), client)

    assert f"stage factory {spec!r} {problem}" in str(raised.value)


def test_load_stages_rejects_stage_without_methods(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("stage_factories")
    module.build = lambda settings, client: types.SimpleNamespace(  # type: ignore[attr-defined]
        name="broken", process=None, close=None
    )
    monkeypatch.setitem(sys.modules, "stage_factories", module)
    client = redis.Redis(host="127.0.0.1", port=1)

    with pytest.raises(InvalidSettingsError) as raised:
        load_stages(["stage_factories:build"], HotPathSettings(), client)

    assert "returned a SimpleNamespace without process, close" in str(raised.value)


def test_load_stages_closes_returned_coroutine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def build(settings: HotPathSettings, client: redis.Redis) -> None:
        return None

    module = types.ModuleType("stage_factories")
    module.build = build  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "stage_factories", module)
    client = redis.Redis(host="127.0.0.1", port=1)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(InvalidSettingsError, match="returned a coroutine"):
            load_stages(["stage_factories:build"], HotPathSettings(), client)
        gc.collect()

    assert [str(warning.message) for warning in caught] == []
