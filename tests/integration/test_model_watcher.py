"""Hot swap of the ranker through the real ``models`` topic while scoring runs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from prometheus_client import REGISTRY

from models.multitask.dataset import build_training_set
from models.multitask.model import ModelConfig
from models.multitask.ranker import CandidateInput, Ranker
from models.multitask.synthetic import generate_examples
from models.multitask.train import TrainConfig, fit_feature_spec, train_new_model
from models.registry import (
    ArtifactMetadata,
    DataWindow,
    ModelAnnouncement,
    ModelRegistry,
)
from services.common.errors import TopicMissingError
from services.common.kafka import TopicSpec, create_topics
from services.common.model_watcher import ModelWatcher, load_ranker
from services.common.settings import KafkaSettings
from services.trainer.announcer import ModelAnnouncer

pytestmark = pytest.mark.integration

BUCKETS = {"user_id": 256, "item_id": 512, "category_id": 32, "brand": 32}
CONFIG = ModelConfig(embedding_dim=4, expert_count=2, expert_width=8, tower_width=4)
CANDIDATES = [CandidateInput(f"i{n}", {}, f"c{n % 20}", "b1", 10.0) for n in range(50)]
USER_FEATURES = {"user_event_count_1h": 3.0}


def _save_versions(registry: ModelRegistry, count: int) -> list[ArtifactMetadata]:
    torch.set_num_threads(1)
    rows = build_training_set(generate_examples(600, user_count=30, item_count=80))
    spec = fit_feature_spec(rows, hash_buckets=BUCKETS)
    window = DataWindow(start=None, end=None, examples=600, rows=len(rows))
    saved = []
    for seed in range(count):
        config = TrainConfig(epochs=1, batch_size=256, seed=seed)
        model, _ = train_new_model(spec, CONFIG, rows, config)
        saved.append(registry.save("ranker", model, spec, window, {}))
    return saved


class SteadyScorer:
    """Scores the same request through ``watcher.current()`` until stopped."""

    def __init__(self, watcher: ModelWatcher, period_seconds: float) -> None:
        self.calls: list[tuple[str, np.ndarray]] = []
        self._watcher = watcher
        self._period = period_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_for_calls(self, count: int, timeout_seconds: float) -> None:
        target = len(self.calls) + count
        deadline = time.monotonic() + timeout_seconds
        while len(self.calls) < target and time.monotonic() < deadline:
            self._stop.wait(self._period)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            ranker = self._watcher.current()
            if ranker is None:
                continue
            probs = ranker.predict("u1", USER_FEATURES, CANDIDATES)
            self.calls.append((ranker.model_version, probs))


def _corrupt(registry: ModelRegistry, version: str) -> None:
    weights = registry.path_of(version) / "weights.safetensors"
    damaged = bytearray(weights.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    weights.write_bytes(bytes(damaged))


def _uri(registry: ModelRegistry, metadata: ArtifactMetadata) -> str:
    return str(registry.path_of(metadata.model_version))


def _announced_topic(
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    registry: ModelRegistry,
    metadata: ArtifactMetadata,
) -> str:
    """Return a new models topic on which ``metadata`` is already announced."""
    topic = make_topic("models", partitions=1, is_compacted=True)
    ModelAnnouncer(kafka_settings, topic).announce(metadata, _uri(registry, metadata))
    return topic


def _hanging_loader(
    versions: list[str], release_on_exit: list[threading.Event]
) -> tuple[Callable[[ModelAnnouncement], Ranker], threading.Event]:
    """Return a loader whose loads of ``versions`` block like a hung volume.

    The registry refuses files that could block, such as FIFOs, so a read
    that never returns is made in the loader instead. Setting the returned
    event lets the blocked loads go on to read the real artifact.
    """
    volume_back = threading.Event()
    release_on_exit.append(volume_back)

    def loader(announcement: ModelAnnouncement) -> Ranker:
        if announcement.model_version in versions:
            volume_back.wait()
        return load_ranker(announcement)

    return loader, volume_back


def _loads(outcome: str) -> float:
    return (
        REGISTRY.get_sample_value("cartwheel_model_loads_total", {"outcome": outcome})
        or 0.0
    )


def _behind(topic: str) -> float | None:
    return REGISTRY.get_sample_value(
        "cartwheel_model_behind_announcement", {"topic": topic}
    )


def _wait_until_current(
    watcher: ModelWatcher, model_version: str, timeout_seconds: float
) -> bool:
    """Return whether ``model_version`` becomes current in time.

    Unlike ``wait_for``, it keeps waiting after the version has failed once.
    """
    deadline = time.monotonic() + timeout_seconds
    pause = threading.Event()
    while time.monotonic() < deadline:
        current = watcher.current()
        if current is not None and current.model_version == model_version:
            return True
        pause.wait(0.05)
    return False


@pytest.fixture
def release_on_exit() -> Iterator[list[threading.Event]]:
    """Collect events that blocked loaders wait on, and set them after the test."""
    events: list[threading.Event] = []
    yield events
    for event in events:
        event.set()


def _reference(registry: ModelRegistry, version: str) -> np.ndarray:
    ranker = Ranker.from_artifact(registry.load(version))
    return ranker.predict("u1", USER_FEATURES, CANDIDATES)


def test_watcher_swaps_versions_at_one_point_and_rejects_corrupt_artifact(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = ModelRegistry(tmp_path)
    first, second, corrupt = _save_versions(registry, 3)
    _corrupt(registry, corrupt.model_version)
    expected = {
        meta.model_version: _reference(registry, meta.model_version)
        for meta in (first, second)
    }
    topic = make_topic("models", partitions=1, is_compacted=True)
    announcer = ModelAnnouncer(kafka_settings, topic)
    watcher = ModelWatcher(kafka_settings, topic, "ranker")
    uri = {
        m.model_version: str(registry.path_of(m.model_version))
        for m in (first, second, corrupt)
    }
    watcher.start()
    scorer = SteadyScorer(watcher, period_seconds=0.002)

    assert watcher.current() is None
    announcer.announce(first, uri[first.model_version])
    assert watcher.wait_for(first.model_version, timeout_seconds=30)
    scorer.start()
    scorer.wait_for_calls(50, timeout_seconds=30)
    announcer.announce(second, uri[second.model_version])
    assert watcher.wait_for(second.model_version, timeout_seconds=30)
    scorer.wait_for_calls(50, timeout_seconds=30)
    with caplog.at_level(logging.ERROR, logger="services.common.model_watcher"):
        announcer.announce(corrupt, uri[corrupt.model_version])
        assert not watcher.wait_for(corrupt.model_version, timeout_seconds=30)
    scorer.wait_for_calls(50, timeout_seconds=30)
    scorer.stop()
    watcher.stop()

    versions = [version for version, _ in scorer.calls]
    switches = [i for i in range(1, len(versions)) if versions[i] != versions[i - 1]]
    assert versions[0] == first.model_version
    assert versions[-1] == second.model_version
    assert len(switches) == 1
    assert corrupt.model_version not in versions
    for version, probs in scorer.calls:
        assert np.array_equal(probs, expected[version]), version
    current = watcher.current()
    assert current is not None
    assert current.model_version == second.model_version
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any(corrupt.model_version in r.getMessage() for r in failures)


def test_watcher_loads_newest_announcement_on_start(
    tmp_path: Path, kafka_settings: KafkaSettings, make_topic: Callable[..., str]
) -> None:
    registry = ModelRegistry(tmp_path)
    first, second = _save_versions(registry, 2)
    topic = make_topic("models", partitions=1, is_compacted=True)
    announcer = ModelAnnouncer(kafka_settings, topic)
    for meta in (first, second):
        announcer.announce(meta, str(registry.path_of(meta.model_version)))
    watcher = ModelWatcher(kafka_settings, topic, "ranker")

    watcher.start()

    assert watcher.wait_for(second.model_version, timeout_seconds=30)
    watcher.stop()
    assert _behind(topic) == 0


def test_watcher_survives_any_load_error(
    tmp_path: Path, kafka_settings: KafkaSettings, make_topic: Callable[..., str]
) -> None:
    registry = ModelRegistry(tmp_path)
    broken, good = _save_versions(registry, 2)

    def loader(announcement: ModelAnnouncement) -> Ranker:
        if announcement.model_version == broken.model_version:
            raise RuntimeError("not an artifact error")
        return load_ranker(announcement)

    topic = make_topic("models", partitions=1, is_compacted=True)
    announcer = ModelAnnouncer(kafka_settings, topic)
    watcher = ModelWatcher(kafka_settings, topic, "ranker", loader=loader)
    watcher.start()
    try:
        announcer.announce(broken, str(registry.path_of(broken.model_version)))
        assert not watcher.wait_for(broken.model_version, timeout_seconds=30)
        announcer.announce(good, str(registry.path_of(good.model_version)))
        assert watcher.wait_for(good.model_version, timeout_seconds=30)
    finally:
        watcher.stop()

    running = REGISTRY.get_sample_value(
        "cartwheel_model_watcher_running", {"topic": topic}
    )
    assert running == 1


def test_watcher_falls_back_on_fresh_start(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = ModelRegistry(tmp_path)
    oldest, good, broken, newest = _save_versions(registry, 4)
    _corrupt(registry, broken.model_version)
    _corrupt(registry, newest.model_version)
    topic = make_topic("models", partitions=1, is_compacted=True)
    # Compaction leaves only the newest announcement of a key on the topic.
    ModelAnnouncer(kafka_settings, topic).announce(newest, _uri(registry, newest))
    watcher = ModelWatcher(kafka_settings, topic, "ranker")

    with caplog.at_level(logging.WARNING, logger="services.common.model_watcher"):
        watcher.start()
        try:
            assert watcher.wait_for(good.model_version, timeout_seconds=30)
        finally:
            watcher.stop()

    assert not watcher.wait_for(newest.model_version, timeout_seconds=0)
    assert not watcher.wait_for(broken.model_version, timeout_seconds=0)
    fallbacks = [
        r.getMessage() for r in caplog.records if "earlier model version" in r.message
    ]
    assert len(fallbacks) == 1
    assert f"model_version={good.model_version}" in fallbacks[0]
    assert f"announced={newest.model_version}" in fallbacks[0]


def test_watcher_falls_back_past_hung_load(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    release_on_exit: list[threading.Event],
) -> None:
    registry = ModelRegistry(tmp_path)
    good, stuck = _save_versions(registry, 2)
    loader, _ = _hanging_loader([stuck.model_version], release_on_exit)
    topic = _announced_topic(kafka_settings, make_topic, registry, stuck)
    watcher = ModelWatcher(
        kafka_settings, topic, "ranker", loader=loader, load_timeout_seconds=0.5
    )
    watcher.start()

    try:
        is_loaded = watcher.wait_for(good.model_version, timeout_seconds=30)
        behind = _behind(topic)
    finally:
        watcher.stop()

    assert is_loaded
    assert behind == 1


def test_watcher_keeps_loaded_ranker_over_fallback(
    tmp_path: Path, kafka_settings: KafkaSettings, make_topic: Callable[..., str]
) -> None:
    registry = ModelRegistry(tmp_path)
    first, never_announced, corrupt = _save_versions(registry, 3)
    _corrupt(registry, corrupt.model_version)
    topic = make_topic("models", partitions=1, is_compacted=True)
    announcer = ModelAnnouncer(kafka_settings, topic)
    watcher = ModelWatcher(kafka_settings, topic, "ranker")
    watcher.start()

    try:
        announcer.announce(first, _uri(registry, first))
        assert watcher.wait_for(first.model_version, timeout_seconds=30)
        announcer.announce(corrupt, _uri(registry, corrupt))
        assert not watcher.wait_for(corrupt.model_version, timeout_seconds=30)
    finally:
        watcher.stop()

    current = watcher.current()
    assert current is not None
    assert current.model_version == first.model_version


def test_watcher_times_out_blocked_read(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
    release_on_exit: list[threading.Event],
) -> None:
    registry = ModelRegistry(tmp_path)
    stuck, good = _save_versions(registry, 2)
    loader, _ = _hanging_loader([stuck.model_version], release_on_exit)
    topic = make_topic("models", partitions=1, is_compacted=True)
    announcer = ModelAnnouncer(kafka_settings, topic)
    watcher = ModelWatcher(
        kafka_settings, topic, "ranker", loader=loader, load_timeout_seconds=0.5
    )
    timed_out_before = _loads("timed_out")
    watcher.start()

    try:
        with caplog.at_level(logging.ERROR, logger="services.common.model_watcher"):
            announcer.announce(stuck, _uri(registry, stuck))
            assert not watcher.wait_for(stuck.model_version, timeout_seconds=30)
        blocked = REGISTRY.get_sample_value(
            "cartwheel_model_blocked_loads", {"topic": topic}
        )
        announcer.announce(good, _uri(registry, good))
        assert watcher.wait_for(good.model_version, timeout_seconds=30)
    finally:
        watcher.stop()

    assert _loads("timed_out") - timed_out_before == 1
    assert blocked == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    timed_out = [m for m in errors if "model load timed out" in m]
    assert len(timed_out) == 1
    assert f"model_version={stuck.model_version}" in timed_out[0]
    assert "timeout_seconds=0.5" in timed_out[0]


def test_watcher_waits_when_two_loads_block(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    release_on_exit: list[threading.Event],
) -> None:
    registry = ModelRegistry(tmp_path)
    first, hung_a, hung_b, last = _save_versions(registry, 4)
    released = {
        hung_a.model_version: threading.Event(),
        hung_b.model_version: threading.Event(),
    }
    release_on_exit.extend(released.values())

    def loader(announcement: ModelAnnouncement) -> Ranker:
        hang = released.get(announcement.model_version)
        if hang is not None:
            hang.wait()
        return load_ranker(announcement)

    topic = make_topic("models", partitions=1, is_compacted=True)
    announcer = ModelAnnouncer(kafka_settings, topic)
    watcher = ModelWatcher(
        kafka_settings, topic, "ranker", loader=loader, load_timeout_seconds=0.5
    )
    watcher.start()

    try:
        announcer.announce(first, _uri(registry, first))
        assert watcher.wait_for(first.model_version, timeout_seconds=30)
        for hung in (hung_a, hung_b):
            announcer.announce(hung, _uri(registry, hung))
            assert not watcher.wait_for(hung.model_version, timeout_seconds=30)
        announcer.announce(last, _uri(registry, last))
        is_loaded_while_blocked = watcher.wait_for(last.model_version, 2)
        released[hung_a.model_version].set()
        is_loaded_after_return = watcher.wait_for(last.model_version, 30)
    finally:
        watcher.stop()

    assert not is_loaded_while_blocked
    assert is_loaded_after_return


def test_watcher_uses_late_load_on_fresh_start(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    release_on_exit: list[threading.Event],
) -> None:
    registry = ModelRegistry(tmp_path)
    (late,) = _save_versions(registry, 1)
    loader, volume_back = _hanging_loader([late.model_version], release_on_exit)
    topic = _announced_topic(kafka_settings, make_topic, registry, late)
    watcher = ModelWatcher(
        kafka_settings, topic, "ranker", loader=loader, load_timeout_seconds=0.5
    )
    watcher.start()

    try:
        assert not watcher.wait_for(late.model_version, timeout_seconds=30)
        # The volume comes back: the blocked read gets the real weights.
        volume_back.set()
        is_loaded = _wait_until_current(watcher, late.model_version, 30)
    finally:
        watcher.stop()

    assert is_loaded


def test_watcher_retries_newest_after_late_failure(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    release_on_exit: list[threading.Event],
) -> None:
    registry = ModelRegistry(tmp_path)
    earlier, newest = _save_versions(registry, 2)
    volume_back = threading.Event()
    release_on_exit.append(volume_back)
    newest_loads: list[int] = []

    def loader(announcement: ModelAnnouncement) -> Ranker:
        if announcement.model_version == newest.model_version:
            newest_loads.append(1)
            if len(newest_loads) == 1:
                volume_back.wait()
                raise OSError("stale file handle")
        return load_ranker(announcement)

    topic = _announced_topic(kafka_settings, make_topic, registry, newest)
    watcher = ModelWatcher(
        kafka_settings, topic, "ranker", loader=loader, load_timeout_seconds=0.5
    )
    watcher.start()

    try:
        assert watcher.wait_for(earlier.model_version, timeout_seconds=30)
        volume_back.set()
        is_loaded = _wait_until_current(watcher, newest.model_version, 30)
    finally:
        watcher.stop()

    assert is_loaded
    assert len(newest_loads) == 2


def test_watcher_retries_failed_version_after_delay(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = ModelRegistry(tmp_path)
    earlier, newest = _save_versions(registry, 2)
    volume = {"is_readable": False}

    def loader(announcement: ModelAnnouncement) -> Ranker:
        if announcement.model_version == newest.model_version:
            if not volume["is_readable"]:
                raise OSError("no such file: the volume is not mounted yet")
        return load_ranker(announcement)

    topic = _announced_topic(kafka_settings, make_topic, registry, newest)
    watcher = ModelWatcher(
        kafka_settings,
        topic,
        "ranker",
        loader=loader,
        retry_seconds=0.5,
        load_attempts=10,
    )
    failed_before = _loads("failed")

    with caplog.at_level(logging.INFO, logger="services.common.model_watcher"):
        watcher.start()
        try:
            assert watcher.wait_for(earlier.model_version, timeout_seconds=30)
            is_retried_while_unreadable = _wait_until_failures(
                failed_before + 2, timeout_seconds=30
            )
            behind_while_unreadable = _behind(topic)
            volume["is_readable"] = True
            is_loaded = _wait_until_current(watcher, newest.model_version, 30)
            behind_after = _behind(topic)
        finally:
            watcher.stop()

    assert is_retried_while_unreadable
    assert behind_while_unreadable == 1
    assert is_loaded
    assert behind_after == 0
    retries = [r.getMessage() for r in caplog.records if "again" in r.message]
    assert retries
    assert f"model_version={newest.model_version}" in retries[0]
    failures = [
        record
        for record in caplog.records
        if record.getMessage().startswith("model load failed")
        and f"model_version={newest.model_version}" in record.getMessage()
    ]
    assert len(failures) >= 2
    assert sum(1 for record in failures if record.exc_info) == 1


def test_watcher_fallback_skips_unloadable_versions(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = ModelRegistry(tmp_path)
    copied_late, broken, newest = _save_versions(registry, 3)
    _corrupt(registry, broken.model_version)
    _corrupt(registry, newest.model_version)
    # The registry lists no version whose metadata it cannot read, as while
    # a copy is still in progress.
    metadata = registry.path_of(copied_late.model_version) / "metadata.json"
    hidden = metadata.with_name("metadata.json.partial")
    metadata.rename(hidden)
    loads: list[str] = []

    def loader(announcement: ModelAnnouncement) -> Ranker:
        loads.append(announcement.model_version)
        return load_ranker(announcement)

    topic = _announced_topic(kafka_settings, make_topic, registry, newest)
    watcher = ModelWatcher(
        kafka_settings,
        topic,
        "ranker",
        loader=loader,
        retry_seconds=0.2,
        load_attempts=3,
    )

    with caplog.at_level(logging.INFO, logger="services.common.model_watcher"):
        watcher.start()
        try:
            # The newest version is skipped after its third load, and later
            # retries only list the earlier versions again.
            is_retried = _wait_until_loads(loads, newest.model_version, 3, 30)
            broken_loads = loads.count(broken.model_version)
            hidden.rename(metadata)
            is_loaded = _wait_until_current(watcher, copied_late.model_version, 30)
        finally:
            watcher.stop()

    assert is_retried
    assert broken_loads == 1
    assert is_loaded
    assert loads.count(copied_late.model_version) == 1
    broken_failures = [
        record
        for record in caplog.records
        if record.getMessage().startswith("model load failed")
        and f"model_version={broken.model_version}" in record.getMessage()
    ]
    assert len(broken_failures) == 1
    # A corrupt artifact's error names the file and the check: no traceback.
    assert broken_failures[0].exc_info is None
    fallback_errors = [
        r for r in caplog.records if "no earlier version loaded" in r.message
    ]
    assert len(fallback_errors) == 1
    assert fallback_errors[0].levelno == logging.ERROR


def test_watcher_skips_corrupt_version_while_scoring_goes_on(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = ModelRegistry(tmp_path)
    good, corrupt, later = _save_versions(registry, 3)
    _corrupt(registry, corrupt.model_version)
    topic = _announced_topic(kafka_settings, make_topic, registry, good)
    announcer = ModelAnnouncer(kafka_settings, topic)
    watcher = ModelWatcher(
        kafka_settings, topic, "ranker", retry_seconds=0.2, load_attempts=2
    )
    scorer = SteadyScorer(watcher, period_seconds=0.01)
    failed_before = _loads("failed")

    with caplog.at_level(logging.INFO, logger="services.common.model_watcher"):
        watcher.start()
        try:
            assert watcher.wait_for(good.model_version, timeout_seconds=30)
            scorer.start()
            announcer.announce(corrupt, _uri(registry, corrupt))
            is_skipped = _wait_until_skipped(topic, 30)
            # Five retry periods, in which a watcher without a bound loads again.
            time.sleep(1.0)
            failed_while_skipped = _loads("failed") - failed_before
            scorer.wait_for_calls(20, timeout_seconds=30)
            announcer.announce(later, _uri(registry, later))
            is_later_loaded = watcher.wait_for(later.model_version, 30)
        finally:
            scorer.stop()
            watcher.stop()

    assert is_skipped
    assert failed_while_skipped == 2
    assert corrupt.model_version not in {version for version, _ in scorer.calls}
    assert scorer.calls[0][0] == good.model_version
    assert is_later_loaded
    assert _skipped(topic) == 0
    skipped_lines = [r for r in caplog.records if "model version skipped" in r.message]
    assert len(skipped_lines) == 1
    assert f"model_version={corrupt.model_version}" in skipped_lines[0].message
    assert f"current={good.model_version}" in skipped_lines[0].message


def _skipped(topic: str) -> float | None:
    return REGISTRY.get_sample_value(
        "cartwheel_model_announcement_skipped", {"topic": topic}
    )


def _wait_until_skipped(topic: str, timeout_seconds: float) -> bool:
    """Return whether the newest announced version is skipped in time."""
    deadline = time.monotonic() + timeout_seconds
    pause = threading.Event()
    while time.monotonic() < deadline:
        if _skipped(topic) == 1:
            return True
        pause.wait(0.05)
    return False


def test_watcher_leaves_loaded_newest_version_alone(
    tmp_path: Path, kafka_settings: KafkaSettings, make_topic: Callable[..., str]
) -> None:
    registry = ModelRegistry(tmp_path)
    (only,) = _save_versions(registry, 1)
    loads: list[str] = []

    def loader(announcement: ModelAnnouncement) -> Ranker:
        loads.append(announcement.model_version)
        return load_ranker(announcement)

    topic = _announced_topic(kafka_settings, make_topic, registry, only)
    watcher = ModelWatcher(
        kafka_settings, topic, "ranker", loader=loader, retry_seconds=0.2
    )
    watcher.start()

    try:
        assert watcher.wait_for(only.model_version, timeout_seconds=30)
        time.sleep(1.0)
    finally:
        watcher.stop()

    assert loads == [only.model_version]


def _wait_until_failures(count: float, timeout_seconds: float) -> bool:
    """Return whether the failed-load counter reaches ``count`` in time."""
    deadline = time.monotonic() + timeout_seconds
    pause = threading.Event()
    while time.monotonic() < deadline:
        if _loads("failed") >= count:
            return True
        pause.wait(0.05)
    return False


def _wait_until_loads(
    loads: list[str], model_version: str, count: int, timeout_seconds: float
) -> bool:
    """Return whether ``model_version`` appears ``count`` times in ``loads`` in time."""
    deadline = time.monotonic() + timeout_seconds
    pause = threading.Event()
    while time.monotonic() < deadline:
        if loads.count(model_version) >= count:
            return True
        pause.wait(0.05)
    return False


def test_watcher_waits_for_missing_topic(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    unique_name: Callable[[str], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = ModelRegistry(tmp_path)
    (first,) = _save_versions(registry, 1)
    topic = unique_name("models")
    watcher = ModelWatcher(kafka_settings, topic, "ranker")

    with caplog.at_level(logging.INFO):
        watcher.start(wait_for_topic=True)
        try:
            running_while_missing = _running(topic)
            current_while_missing = watcher.current()
            create_topics(kafka_settings, [TopicSpec(topic, 1, is_compacted=True)])
            ModelAnnouncer(kafka_settings, topic).announce(first, _uri(registry, first))
            is_loaded = watcher.wait_for(first.model_version, timeout_seconds=60)
            running_after = _running(topic)
        finally:
            watcher.stop()

    assert running_while_missing == 0
    assert current_while_missing is None
    assert is_loaded
    assert running_after == 1
    messages = [record.getMessage() for record in caplog.records]
    assert sum("waits for the models topic" in m for m in messages) == 1
    assert (
        sum("model watcher recovered, topic lookup succeeded" in m for m in messages)
        == 1
    )


def test_watcher_without_waiting_rejects_missing_topic(
    kafka_settings: KafkaSettings, unique_name: Callable[[str], str]
) -> None:
    watcher = ModelWatcher(kafka_settings, unique_name("models"), "ranker")

    with pytest.raises(TopicMissingError, match="is missing"):
        watcher.start()


def _running(topic: str) -> float | None:
    return REGISTRY.get_sample_value(
        "cartwheel_model_watcher_running", {"topic": topic}
    )
