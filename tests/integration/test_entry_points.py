"""A service started with ``python -m`` against a broker that lacks its topics."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPOSITORY = Path(__file__).resolve().parents[2]


def test_catalog_consumer_missing_topic_exits_2(
    kafka_bootstrap: str, redis_url: str, unique_name: Callable[[str], str]
) -> None:
    catalog = unique_name("catalog")
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("CARTWHEEL_")
    }
    environment.update(
        {
            "CARTWHEEL_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "CARTWHEEL_REDIS_URL": redis_url,
            "CARTWHEEL_TOPIC_CATALOG": catalog,
            "CARTWHEEL_FEATURES_METRICS_PORT": "0",
            "CARTWHEEL_FEATURES_LOG_LEVEL": "WARNING",
        }
    )

    result = subprocess.run(
        [sys.executable, "-m", "services.features"],
        env=environment,
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert result.returncode == 2, result.stderr
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("services.features: error: ")
    assert f"topic {catalog!r} is missing" in errors[0]
    assert "Traceback" not in result.stderr
