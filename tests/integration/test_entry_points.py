"""A service started with ``python -m`` against a broker that lacks its topics."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.entry_points import environment_without_settings, run_module

pytestmark = pytest.mark.integration


def test_catalog_consumer_missing_topic_exits_2(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]
) -> None:
    catalog = unique_name("catalog")
    environment = environment_without_settings()
    environment.update(
        {
            "CARTWHEEL_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "CARTWHEEL_REDIS_URL": redis_url,
            "CARTWHEEL_TOPIC_CATALOG": catalog,
            "CARTWHEEL_FEATURES_METRICS_PORT": "0",
            "CARTWHEEL_FEATURES_LOG_LEVEL": "WARNING",
        }
    )

    result = run_module("services.features", environment)

    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert result.returncode == 2, result.stderr
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("services.features: error: ")
    assert f"topic {catalog!r} is missing" in errors[0]
    assert "Traceback" not in result.stderr
