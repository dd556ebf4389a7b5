"""The demo's environment for its child services."""

from __future__ import annotations

from pathlib import Path

from services.common.settings import KafkaSettings, RedisSettings
from services.demo.runner import _service_environment


def test_child_ports_are_distinct(tmp_path: Path) -> None:
    environment = _service_environment(
        KafkaSettings(bootstrap="127.0.0.1:9"),
        RedisSettings(url="redis://127.0.0.1:9/0"),
        tmp_path,
        warmup_events=1000,
    )

    ports = [
        value
        for name, value in environment.items()
        if name.endswith("_METRICS_PORT") or name == "CARTWHEEL_API_PORT"
    ]
    assert len(ports) == 5
    assert len(set(ports)) == 5
