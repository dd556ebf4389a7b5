"""Measure the feedback app: the Redis join alone and the Faust worker end to end.

Command (from the repository root):

    .venv/bin/python benchmarks/bench_feedback.py [--users 2000] [--runs 3]

The script starts a private Tansu broker and redis-server on free loopback
ports. Each run publishes, per user, five click events, each followed by a
products slate of 20 items (so every user has ten messages), then measures:

* broker pass-through: a confluent-kafka consumer reading every message of
  the run's topics from the start (the rate the broker itself can deliver);
* the Redis join alone: ``FeedbackTables.apply`` over the same messages in
  batches of 500, with no Kafka involved;
* the worker end to end: a ``python -m services.feedback`` subprocess started
  after publishing, timed from its first counted impression until every
  impression is counted (start-up and the group join are left out).

It prints a Markdown table of medians over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
import redis.asyncio
from confluent_kafka import Consumer, Producer

from schemas.events import Event, EventType
from schemas.recommendations import CandidateSource, Slate, SlateItem, Surface
from services.common.kafka import (
    TopicSpec,
    consumer_config,
    create_topics,
    producer_config,
)
from services.common.parent_death import signal_on_parent_death
from services.common.settings import KafkaSettings, RedisSettings, TopicSettings
from services.feedback.reader import outcome_counts
from services.feedback.settings import FeedbackSettings
from services.feedback.tables import FeedbackTables, Outcome
from services.infra import find_free_port, start_broker, start_redis

_EVENTS_PER_USER = 5
_SLATE_ITEMS = 20
_PARTITIONS = 6
_START = datetime(2026, 1, 5, tzinfo=UTC)


def build_messages(users: int) -> list[Event | Slate]:
    """Return each user's events, each followed by its products slate."""
    messages: list[Event | Slate] = []
    for user in range(users):
        for index in range(_EVENTS_PER_USER):
            event = Event(
                event_id=f"u{user}-e{index}",
                event_type=EventType.CLICK,
                user_id=f"u{user}",
                item_id=f"i{(user + index) % 1000}",
                event_time=_START + timedelta(seconds=30 * index),
            )
            items = [
                SlateItem(
                    item_id=f"i{(user + index + rank) % 1000}",
                    rank=rank,
                    score=1.0 / rank,
                    source=CandidateSource.TRENDING,
                )
                for rank in range(1, _SLATE_ITEMS + 1)
            ]
            slate = Slate(
                recommendation_id=uuid.uuid4().hex,
                surface=Surface.PRODUCTS,
                user_id=event.user_id,
                trigger_event_id=event.event_id,
                items=items,
                model_version="bench",
                generated_at=datetime.now(UTC),
                latency_ms=1.0,
            )
            messages += [event, slate]
    return messages


def publish(
    kafka: KafkaSettings, topics: TopicSettings, messages: list[Event | Slate]
) -> None:
    producer = Producer(producer_config(kafka))
    for message in messages:
        if isinstance(message, Event):
            topic = topics.events
        else:
            topic = topics.recommendations(message.surface.value)
        producer.produce(
            topic, message.model_dump_json().encode(), message.user_id.encode()
        )
        producer.poll(0)
    producer.flush(60)


def measure_pass_through(
    kafka: KafkaSettings, topics: TopicSettings, total: int
) -> float:
    consumer = Consumer(consumer_config(kafka, f"bench-read-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([topics.events, topics.recommendations("products")])
    seen = 0
    started = None
    deadline = time.monotonic() + 120
    while seen < total and time.monotonic() < deadline:
        for message in consumer.consume(1000, 0.5):
            if message.error() is None:
                started = started or time.perf_counter()
                seen += 1
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return seen / elapsed if elapsed > 0 else float("nan")


async def measure_join(
    settings: FeedbackSettings, messages: list[Event | Slate]
) -> float:
    client = redis.asyncio.Redis.from_url(settings.redis.url.get_secret_value())
    tables = FeedbackTables(client, settings)
    started = time.perf_counter()
    for offset in range(0, len(messages), 500):
        await tables.apply(messages[offset : offset + 500])
    elapsed = time.perf_counter() - started
    await tables.close()
    return len(messages) / elapsed


def measure_worker(
    kafka: KafkaSettings,
    redis_settings: RedisSettings,
    topics: TopicSettings,
    total_slates: int,
    work_dir: Path,
) -> float:
    environment = {
        **os.environ,
        "CARTWHEEL_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "CARTWHEEL_REDIS_URL": redis_settings.url.get_secret_value(),
        "CARTWHEEL_REDIS_KEY_PREFIX": redis_settings.key_prefix,
        "CARTWHEEL_TOPIC_EVENTS": topics.events,
        "CARTWHEEL_TOPIC_RECOMMENDATIONS_PREFIX": topics.recommendations_prefix,
        "CARTWHEEL_TOPIC_PARTITIONS": str(_PARTITIONS),
        "CARTWHEEL_FEEDBACK_APP_ID": f"bench-{uuid.uuid4().hex[:8]}",
        "CARTWHEEL_FEEDBACK_METRICS_PORT": str(find_free_port()),
        "CARTWHEEL_FEEDBACK_DATA_DIR": str(work_dir / "feedback"),
    }
    client = redis.Redis.from_url(redis_settings.url.get_secret_value())
    key = ("products", "bench", Outcome.IMPRESSION)
    since = datetime.now(UTC) - timedelta(days=1)
    with (work_dir / "worker.log").open("ab") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "services.feedback"],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=signal_on_parent_death(signal.SIGTERM),
        )
    try:
        first = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            counted = outcome_counts(client, redis_settings.key_prefix, since)[key]
            if counted and first is None:
                first = (time.perf_counter(), counted)
            if counted >= total_slates:
                break
            time.sleep(0.05)
        finished = time.perf_counter()
    finally:
        worker.terminate()
        worker.wait(30)
        client.close()
    if first is None or finished == first[0]:
        return float("nan")
    # Each impression stands for two messages: the slate and its trigger event.
    return 2 * (total_slates - first[1]) / (finished - first[0])


def run_once(
    kafka: KafkaSettings, redis_url: str, users: int, work_dir: Path
) -> dict[str, float]:
    run_id = uuid.uuid4().hex[:8]
    topics = TopicSettings(
        events=f"bench-events-{run_id}",
        recommendations_prefix=f"bench-recs-{run_id}",
        partitions=_PARTITIONS,
    )
    create_topics(
        kafka,
        [TopicSpec(topics.events, _PARTITIONS)]
        + [TopicSpec(topics.recommendations(s.value), _PARTITIONS) for s in Surface],
    )
    messages = build_messages(users)
    publish(kafka, topics, messages)
    join_settings = FeedbackSettings(
        redis=RedisSettings(url=redis_url, key_prefix=f"join{run_id}")
    )
    return {
        "broker pass-through (msg/s)": measure_pass_through(
            kafka, topics, len(messages)
        ),
        "Redis join alone (msg/s)": asyncio.run(measure_join(join_settings, messages)),
        "Faust worker end to end (msg/s)": measure_worker(
            kafka,
            RedisSettings(url=redis_url, key_prefix=f"work{run_id}"),
            topics,
            users * _EVENTS_PER_USER,
            work_dir,
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000, help="users per run")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are printed")
    args = parser.parse_args()

    work_dir = Path(tempfile.mkdtemp(prefix="bench-feedback-"))
    broker = start_broker(work_dir, find_free_port())
    redis_server = start_redis(work_dir, find_free_port())
    try:
        kafka = KafkaSettings(bootstrap=broker.address)
        results = [
            run_once(kafka, f"redis://{redis_server.address}/0", args.users, work_dir)
            for _ in range(args.runs)
        ]
    finally:
        broker.stop()
        redis_server.stop()

    messages = args.users * _EVENTS_PER_USER * 2
    lines = [
        f"Feedback app, {messages} messages per run ({args.users} users, "
        f"{_EVENTS_PER_USER} events and {_EVENTS_PER_USER} slates of {_SLATE_ITEMS} "
        f"items each), medians of {args.runs} runs",
        "",
        "| measure | median | runs |",
        "|---|---:|---|",
    ]
    for name in results[0]:
        values = [result[name] for result in results]
        runs = ", ".join(f"{value:,.0f}" for value in values)
        lines.append(f"| {name} | {statistics.median(values):,.0f} | {runs} |")
    # The table is the script's output.
    print("\n".join(lines))  # noqa: T201


if __name__ == "__main__":
    main()
