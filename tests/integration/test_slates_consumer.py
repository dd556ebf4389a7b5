"""SlateConsumer against the real broker: order, duplicates, bad input, commits."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from schemas.recommendations import Slate, SlateItem, Surface
from services.client.consumer import SlateConsumer
from services.common.kafka import TopicSpec, create_topics, producer_config
from services.common.settings import KafkaSettings, TopicSettings
from services.infra import find_free_port
from services.infra.processes import LocalServer, start_broker

pytestmark = pytest.mark.integration


def _slate(number: int, surface: Surface = Surface.PRODUCTS) -> Slate:
    return Slate(
        recommendation_id=f"r{number}",
        surface=surface,
        user_id="u1",
        trigger_event_id=f"e{number}",
        items=[SlateItem(item_id=f"i{number}", rank=1, score=1.0, source="trending")],
        model_version="heuristic-v1",
        generated_at=datetime(2019, 10, 1, tzinfo=UTC),
        latency_ms=1.0,
    )


@pytest.fixture
def topics(kafka_settings: KafkaSettings, unique_name) -> TopicSettings:
    topics = TopicSettings(recommendations_prefix=unique_name("recommendations"))
    create_topics(
        kafka_settings, [TopicSpec(topics.recommendations(Surface.PRODUCTS.value), 1)]
    )
    return topics


def _publish(kafka: KafkaSettings, topic: str, values: list[bytes]) -> None:
    producer = Producer(producer_config(kafka))
    for value in values:
        producer.produce(topic, key=b"u1", value=value)
    assert producer.flush(10) == 0


def _take(consumer: SlateConsumer, count: int, polls: int = 100) -> list[Slate]:
    slates: list[Slate] = []
    for _ in range(polls):
        if len(slates) == count:
            break
        slate = consumer.poll(0.2)
        if slate is not None:
            slates.append(slate)
    return slates


def test_slate_consumer_yields_slates_in_order_without_duplicates_or_bad_input(
    kafka_settings: KafkaSettings, topics: TopicSettings, unique_name
) -> None:
    topic = topics.recommendations(Surface.PRODUCTS.value)
    values = [
        _slate(1).model_dump_json().encode(),
        b"not a slate",
        _slate(1).model_dump_json().encode(),
        _slate(2).model_dump_json().encode(),
    ]
    _publish(kafka_settings, topic, values)

    with SlateConsumer(
        kafka_settings, Surface.PRODUCTS, unique_name("site"), topics=topics
    ) as consumer:
        slates = _take(consumer, 2)
        extra = _take(consumer, 1, polls=5)

    assert [slate.recommendation_id for slate in slates] == ["r1", "r2"]
    assert extra == []


def test_slate_consumer_skips_slate_of_other_surface(
    kafka_settings: KafkaSettings,
    topics: TopicSettings,
    unique_name,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = topics.recommendations(Surface.PRODUCTS.value)
    values = [
        _slate(1, Surface.BUNDLES).model_dump_json().encode(),
        _slate(2).model_dump_json().encode(),
    ]
    _publish(kafka_settings, topic, values)

    with SlateConsumer(
        kafka_settings, Surface.PRODUCTS, unique_name("site"), topics=topics
    ) as consumer:
        slates = _take(consumer, 1)

    assert [slate.recommendation_id for slate in slates] == ["r2"]
    assert (
        f"invalid slate skipped topic={topic} partition=0 offset=0 "
        "surface=bundles expected=products"
    ) in caplog.messages


def test_slate_consumer_resumes_after_last_slate_marked_done(
    kafka_settings: KafkaSettings, topics: TopicSettings, unique_name
) -> None:
    topic = topics.recommendations(Surface.PRODUCTS.value)
    _publish(
        kafka_settings, topic, [_slate(n).model_dump_json().encode() for n in (1, 2, 3)]
    )
    group = unique_name("site")

    with SlateConsumer(kafka_settings, Surface.PRODUCTS, group, topics=topics) as first:
        [done] = _take(first, 1)
        first.mark_done()
    with SlateConsumer(
        kafka_settings, Surface.PRODUCTS, group, topics=topics
    ) as second:
        rest = _take(second, 2)

    assert done.recommendation_id == "r1"
    assert [slate.recommendation_id for slate in rest] == ["r2", "r3"]


def test_slate_consumer_reads_unfinished_slate_again_after_restart(
    kafka_settings: KafkaSettings, topics: TopicSettings, unique_name
) -> None:
    topic = topics.recommendations(Surface.PRODUCTS.value)
    _publish(
        kafka_settings, topic, [_slate(n).model_dump_json().encode() for n in (1, 2)]
    )
    group = unique_name("site")

    with SlateConsumer(kafka_settings, Surface.PRODUCTS, group, topics=topics) as first:
        _take(first, 2)
    with SlateConsumer(
        kafka_settings, Surface.PRODUCTS, group, topics=topics
    ) as second:
        again = _take(second, 1)

    assert [slate.recommendation_id for slate in again] == ["r2"]


def test_slate_consumer_rejects_commit_every_below_one(
    kafka_settings: KafkaSettings,
) -> None:
    with pytest.raises(ValueError, match="commit_every=0"):
        SlateConsumer(kafka_settings, Surface.PRODUCTS, "group", commit_every=0)


def test_readme_slate_example_renders_published_slate(
    kafka_bootstrap: str,
    kafka_settings: KafkaSettings,
    topics: TopicSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    # The README's only example that imports the consumer.
    start = readme.index("```python\nfrom services.client import SlateConsumer")
    start += len("```python\n")
    example = readme[start : readme.index("\n```", start)]
    topic = topics.recommendations(Surface.PRODUCTS.value)
    _publish(kafka_settings, topic, [_slate(1).model_dump_json().encode()])
    monkeypatch.setenv("CARTWHEEL_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv(
        "CARTWHEEL_TOPIC_RECOMMENDATIONS_PREFIX", topics.recommendations_prefix
    )
    rendered: list[tuple[str, list[str]]] = []
    namespace: dict[str, Any] = {}

    def render(user_id: str, item_ids: list[str]) -> None:
        # The site's loop runs until the consumer is closed.
        rendered.append((user_id, item_ids))
        namespace["slates"].close()

    namespace["render"] = render
    exec(compile(example, "README.md", "exec"), namespace)

    assert rendered == [("u1", ["i1"])]


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalServer]:
    """A broker of this test's own, which the test kills."""
    server = start_broker(tmp_path / "broker", find_free_port())
    yield server
    server.stop()


def test_slate_consumer_outlives_its_broker(
    own_broker: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    kafka = KafkaSettings(bootstrap=own_broker.address)
    topics = TopicSettings(recommendations_prefix="recommendations")
    topic = topics.recommendations(Surface.PRODUCTS.value)
    create_topics(kafka, [TopicSpec(topic, 1)])
    _publish(kafka, topic, [_slate(n).model_dump_json().encode() for n in (1, 2, 3)])
    consumer = SlateConsumer(
        kafka, Surface.PRODUCTS, "site", topics=topics, commit_every=1
    )
    first = _take(consumer, 2)
    pid = own_broker.pid()
    assert pid is not None

    os.kill(pid, signal.SIGKILL)
    # Each poll marks the slate before it done, whose commit now fails.
    after = [consumer.poll(0.2) for _ in range(10)]
    consumer.close()

    assert [slate.recommendation_id for slate in first] == ["r1", "r2"]
    assert [slate.recommendation_id for slate in after if slate] in ([], ["r3"])
    assert "slate offset" in caplog.text
