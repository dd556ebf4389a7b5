from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from models.multitask.features import FeatureSpec
from models.multitask.model import ModelConfig, build_model
from models.registry import (
    ArtifactMetadata,
    DataWindow,
    ModelAnnouncement,
    ModelRegistry,
)
from services.common import model_watcher
from services.common.errors import BrokerUnreachableError
from services.common.model_watcher import ModelWatcher, earlier_announcements
from services.common.settings import KafkaSettings
from services.infra import find_free_port

NOW = datetime(2026, 5, 17, 12, 0, tzinfo=UTC)
SPEC = FeatureSpec(
    user_feature_names=("user_click_count_1h",),
    item_feature_names=("item_click_count_1h",),
    means=(0.0, 0.0, 0.0),
    stds=(1.0, 1.0, 1.0),
    hash_buckets={"user_id": 4, "item_id": 4, "category_id": 4, "brand": 4},
)
CONFIG = ModelConfig(embedding_dim=2, expert_count=1, expert_width=2, tower_width=2)
WINDOW = DataWindow(start=None, end=None, examples=1, rows=1)


def _save(registry: ModelRegistry, hours: int) -> ArtifactMetadata:
    model = build_model(SPEC, CONFIG)
    created_at = NOW + timedelta(hours=hours)
    return registry.save(
        "ranker", model, SPEC, WINDOW, {}, now=created_at, code="abc1234"
    )


def _announce(
    registry: ModelRegistry, metadata: ArtifactMetadata, hours: int
) -> ModelAnnouncement:
    return ModelAnnouncement(
        model_name="ranker",
        model_version=metadata.model_version,
        artifact_uri=str(registry.path_of(metadata.model_version)),
        announced_at=NOW + timedelta(hours=hours),
    )


def test_earlier_announcements_list_older_versions_newest_first(
    tmp_path: Path,
) -> None:
    registry = ModelRegistry(tmp_path)
    first, second, announced, later = (_save(registry, h) for h in (0, 1, 2, 4))

    earlier = earlier_announcements(_announce(registry, announced, hours=3))

    assert [a.model_version for a in earlier] == [
        second.model_version,
        first.model_version,
    ]
    assert earlier[0].artifact_uri == str(registry.path_of(second.model_version))
    assert later.model_version not in {a.model_version for a in earlier}


def test_earlier_announcements_without_announced_metadata(
    tmp_path: Path,
) -> None:
    registry = ModelRegistry(tmp_path)
    first, announced, later = (_save(registry, h) for h in (0, 1, 3))
    (registry.path_of(announced.model_version) / "metadata.json").write_text("{")

    earlier = earlier_announcements(_announce(registry, announced, hours=2))

    assert [a.model_version for a in earlier] == [first.model_version]


def test_earlier_announcements_never_read_announced_directory(
    tmp_path: Path,
) -> None:
    registry = ModelRegistry(tmp_path)
    first, announced = (_save(registry, h) for h in (0, 1))
    metadata = registry.path_of(announced.model_version) / "metadata.json"
    metadata.unlink()
    # A FIFO without a writer blocks open() like a read on a hung volume.
    os.mkfifo(metadata)
    listed: list[list[ModelAnnouncement]] = []
    announcement = _announce(registry, announced, hours=2)
    lister = threading.Thread(
        target=lambda: listed.append(earlier_announcements(announcement)),
        daemon=True,
    )

    lister.start()
    lister.join(10)

    if lister.is_alive():
        # Opening the write end lets the blocked open() return.
        os.close(os.open(metadata, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("the listing read the announced version's metadata")
    assert len(listed) == 1
    assert [a.model_version for a in listed[0]] == [first.model_version]


def test_earlier_announcements_empty_outside_registry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    _save(registry, 0)
    announced = _save(registry, 1)
    moved = tmp_path / "elsewhere"
    registry.path_of(announced.model_version).rename(moved)
    announcement = _announce(registry, announced, hours=2).model_copy(
        update={"artifact_uri": str(moved)}
    )

    with caplog.at_level(logging.WARNING, logger="services.common.model_watcher"):
        earlier = earlier_announcements(announcement)

    assert earlier == []
    assert "outside a registry" in caplog.text


def test_start_without_broker_names_bootstrap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(model_watcher, "_METADATA_TIMEOUT_SECONDS", 1.0)
    bootstrap = f"127.0.0.1:{find_free_port()}"
    watcher = ModelWatcher(KafkaSettings(bootstrap=bootstrap), "models", "ranker")

    with pytest.raises(BrokerUnreachableError) as caught:
        watcher.start()

    assert bootstrap in str(caught.value)
    assert "CARTWHEEL_KAFKA_BOOTSTRAP" in str(caught.value)


def test_start_silent_listener_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    # The listener accepts connections but never replies, so the check for a
    # refused connection passes and the metadata request times out.
    monkeypatch.setattr(model_watcher, "_METADATA_TIMEOUT_SECONDS", 1.0)
    with socket.create_server(("127.0.0.1", 0)) as server:
        bootstrap = f"127.0.0.1:{server.getsockname()[1]}"
        watcher = ModelWatcher(KafkaSettings(bootstrap=bootstrap), "models", "ranker")

        with pytest.raises(BrokerUnreachableError) as caught:
            watcher.start()

    message = str(caught.value)
    assert message.startswith(f"no Kafka broker responded at {bootstrap} within 1 s")
    assert "CARTWHEEL_KAFKA_BOOTSTRAP" in message
