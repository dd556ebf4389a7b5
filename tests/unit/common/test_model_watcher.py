from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from models import registry as registry_module
from models.errors import ArtifactCorruptError
from models.multitask.features import FeatureSpec
from models.multitask.model import ModelConfig, build_model
from models.registry import (
    ArtifactMetadata,
    DataWindow,
    ModelAnnouncement,
    ModelRegistry,
)
from services.common.errors import BrokerUnreachableError
from services.common.model_watcher import ModelWatcher, earlier_announcements
from services.common.model_watcher import watcher as watcher_module
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
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ModelRegistry(tmp_path)
    first, announced = (_save(registry, h) for h in (0, 1))
    announced_dir = registry.path_of(announced.model_version)
    read = registry_module._read_regular_file
    paths: list[Path] = []

    def recording_read(path: Path, *args: Any, **kwargs: Any) -> bytes:
        paths.append(Path(path))
        return read(path, *args, **kwargs)

    # A read of the announced version could hang on the volume that made it
    # fail, so the listing must not open any of its files.
    monkeypatch.setattr(registry_module, "_read_regular_file", recording_read)
    earlier = earlier_announcements(_announce(registry, announced, hours=2))

    assert [a.model_version for a in earlier] == [first.model_version]
    assert paths
    assert not [path for path in paths if announced_dir in path.parents]


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
    monkeypatch.setattr(watcher_module, "_METADATA_TIMEOUT_SECONDS", 1.0)
    bootstrap = f"127.0.0.1:{find_free_port()}"
    watcher = ModelWatcher(KafkaSettings(bootstrap=bootstrap), "models", "ranker")

    with pytest.raises(BrokerUnreachableError) as caught:
        watcher.start()

    assert bootstrap in str(caught.value)
    assert "CARTWHEEL_KAFKA_BOOTSTRAP" in str(caught.value)


def test_start_silent_listener_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    # The listener accepts connections but never replies, so the check for a
    # refused connection passes and the metadata request times out.
    monkeypatch.setattr(watcher_module, "_METADATA_TIMEOUT_SECONDS", 1.0)
    with socket.create_server(("127.0.0.1", 0)) as server:
        bootstrap = f"127.0.0.1:{server.getsockname()[1]}"
        watcher = ModelWatcher(KafkaSettings(bootstrap=bootstrap), "models", "ranker")

        with pytest.raises(BrokerUnreachableError) as caught:
            watcher.start()

    message = str(caught.value)
    assert message.startswith(f"no Kafka broker responded at {bootstrap} within 1 s")
    assert "CARTWHEEL_KAFKA_BOOTSTRAP" in message


class _Message:
    """A record of the models topic, as confluent-kafka's consumer returns it."""

    def __init__(self, offset: int, announcement: ModelAnnouncement) -> None:
        self._offset = offset
        self._value = announcement.model_dump_json().encode()

    def error(self) -> None:
        return None

    def key(self) -> bytes:
        return b"ranker"

    def value(self) -> bytes:
        return self._value

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


class _Topic:
    """Serves announcements to the watcher; each poll moves the clock forward.

    The watcher polls as often as :meth:`announce` allows and then idles, with
    the clock stopped, so that a test follows a fixed number of retries
    without waiting for them.
    """

    def __init__(self, seconds_per_poll: float) -> None:
        self.now = 0.0
        self.done = threading.Event()
        self._seconds_per_poll = seconds_per_poll
        self._polls = 0
        self._queue: list[ModelAnnouncement] = []
        self._offset = 0
        self._lock = threading.Lock()

    def announce(self, announcement: ModelAnnouncement | None, polls: int) -> None:
        """Queue an announcement, if any, and allow ``polls`` more polls."""
        with self._lock:
            if announcement is not None:
                self._queue.append(announcement)
            self._polls += polls
            self.done.clear()

    def consume(self, count: int, timeout: float) -> list[_Message]:
        with self._lock:
            is_idle = self._polls == 0
            if not is_idle:
                self.now += self._seconds_per_poll
                self._polls -= 1
                queued, self._queue = self._queue, []
        if is_idle:
            # The watcher is done with the batches of the polls allowed so far.
            self.done.set()
            threading.Event().wait(0.01)
            return []
        messages = []
        for announcement in queued:
            self._offset += 1
            messages.append(_Message(self._offset, announcement))
        return messages

    def close(self) -> None:
        pass


class _Ranker:
    def __init__(self, model_version: str) -> None:
        self.model_version = model_version

    def predict(self, *args: object) -> None:
        return None


def _announcement(version: str, minutes: int = 0) -> ModelAnnouncement:
    return ModelAnnouncement(
        model_name="ranker",
        model_version=version,
        artifact_uri=f"/registry/ranker/{version}",
        announced_at=NOW + timedelta(minutes=minutes),
    )


def _skipped(topic: str) -> float | None:
    return REGISTRY.get_sample_value(
        "cartwheel_model_announcement_skipped", {"topic": topic}
    )


def _watched_topic(
    monkeypatch: pytest.MonkeyPatch,
    loads: list[str],
    broken: set[str],
    *,
    earlier: Callable[[], list[ModelAnnouncement]] = list,
) -> tuple[ModelWatcher, _Topic]:
    """Return a watcher on a stand-in topic, with a retry due at every poll."""
    topic = _Topic(seconds_per_poll=1.0)
    monkeypatch.setattr(ModelWatcher, "_open", lambda watcher: topic)

    def loader(announcement: ModelAnnouncement) -> Any:
        loads.append(announcement.model_version)
        if announcement.model_version in broken:
            raise ArtifactCorruptError(f"weights of {announcement.model_version}")
        return _Ranker(announcement.model_version)

    watcher = ModelWatcher(
        KafkaSettings(bootstrap="127.0.0.1:9"),
        f"models-{uuid.uuid4().hex[:8]}",
        "ranker",
        loader=loader,
        earlier_versions=lambda failed: earlier(),
        retry_seconds=1.0,
        load_attempts=3,
        clock=lambda: topic.now,
    )
    return watcher, topic


def _follow(
    watcher: ModelWatcher, topic: _Topic, announcement: ModelAnnouncement | None
) -> None:
    """Announce, let the watcher poll 20 times, and wait for those polls."""
    topic.announce(announcement, polls=20)
    watcher.start()
    assert topic.done.wait(30)


def test_watcher_skips_corrupt_version_after_load_attempts(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    loads: list[str] = []
    watcher, topic = _watched_topic(monkeypatch, loads, broken={"ranker-2"})

    with caplog.at_level(logging.INFO, logger="services.common.model_watcher"):
        _follow(watcher, topic, _announcement("ranker-1"))
        _follow(watcher, topic, _announcement("ranker-2", minutes=1))
        skipped = _skipped(watcher.topic)
        watcher.stop()

    current = watcher.current()
    assert loads == ["ranker-1", "ranker-2", "ranker-2", "ranker-2"]
    assert current is not None
    assert current.model_version == "ranker-1"
    assert skipped == 1
    assert watcher.is_behind_announcement()
    [line] = [r for r in caplog.records if "model version skipped" in r.message]
    assert line.levelno == logging.ERROR
    assert "model_version=ranker-2 attempts=3 current=ranker-1" in line.message
    assert "attempt=3 load_attempts=3" in caplog.text


def test_watcher_tries_skipped_version_when_announced_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loads: list[str] = []
    broken = {"ranker-2"}
    watcher, topic = _watched_topic(monkeypatch, loads, broken)
    _follow(watcher, topic, _announcement("ranker-1"))
    _follow(watcher, topic, _announcement("ranker-2", minutes=1))
    skipped_before = _skipped(watcher.topic)

    # The artifact is restored, and the trainer announces its champion again.
    broken.clear()
    _follow(watcher, topic, _announcement("ranker-2", minutes=2))
    watcher.stop()

    current = watcher.current()
    assert skipped_before == 1
    assert loads.count("ranker-2") == 4
    assert current is not None
    assert current.model_version == "ranker-2"
    assert _skipped(watcher.topic) == 0


def test_watcher_loads_next_version_after_skipped_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loads: list[str] = []
    watcher, topic = _watched_topic(monkeypatch, loads, broken={"ranker-2"})
    _follow(watcher, topic, _announcement("ranker-1"))
    _follow(watcher, topic, _announcement("ranker-2", minutes=1))

    _follow(watcher, topic, _announcement("ranker-3", minutes=2))
    watcher.stop()

    current = watcher.current()
    assert loads == ["ranker-1"] + ["ranker-2"] * 3 + ["ranker-3"]
    assert current is not None
    assert current.model_version == "ranker-3"


def test_watcher_without_ranker_still_looks_for_earlier_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loads: list[str] = []
    listed: list[ModelAnnouncement] = []
    watcher, topic = _watched_topic(
        monkeypatch, loads, broken={"ranker-2"}, earlier=lambda: list(listed)
    )
    _follow(watcher, topic, _announcement("ranker-2", minutes=1))
    loads_before_copy = list(loads)

    # An earlier version whose copy finished after the newest was skipped.
    listed.append(_announcement("ranker-1"))
    _follow(watcher, topic, None)
    watcher.stop()

    current = watcher.current()
    assert loads_before_copy == ["ranker-2"] * 3
    assert loads == ["ranker-2"] * 3 + ["ranker-1"]
    assert current is not None
    assert current.model_version == "ranker-1"


def test_watcher_rejects_zero_load_attempts() -> None:
    with pytest.raises(ValueError, match="load_attempts=0; expected at least 1"):
        ModelWatcher(KafkaSettings(), "models", "ranker", load_attempts=0)
