"""Catalog keys and hot-path settings, without servers."""

from __future__ import annotations

import pytest

from services.features.catalog import parse_catalog_key
from services.features.errors import CatalogKeyError
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
