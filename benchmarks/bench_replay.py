"""Measure replay throughput (validation included) against the broker's own rate.

Command (from the repository root):

    .venv/bin/python benchmarks/bench_replay.py [--events 200000] [--runs 3]

The script starts a private Tansu broker on a free loopback port, repeats the
committed REES46 sample (11,562 events) with fresh event ids until it has
``--events`` events, and then measures, ``--runs`` times each on fresh topics:

* replay: ``Replayer.replay_events``, which serializes each event to JSON,
  validates it with ``parse_event``, produces it keyed by ``user_id`` and
  waits until the broker acknowledged every message;
* validation only: serialization plus ``parse_event``, without Kafka;
* bare produce: a plain confluent-kafka loop producing the same serialized
  bytes with the same producer settings, until all are acknowledged;
* bare consume: a plain consumer reading those messages back;
* pass-through: messages divided by the bare produce time plus the bare
  consume time.

It prints a Markdown table of medians and the ratio of replay to bare produce.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from schemas.events import Event
from schemas.validation import parse_event
from services.common.kafka import (
    TopicSpec,
    consumer_config,
    create_topics,
    producer_config,
)
from services.common.settings import KafkaSettings, TopicSettings
from services.infra import find_free_port, start_broker
from services.replay.datasets import REES46_SAMPLE, rees46
from services.replay.replayer import Replayer, serialize_events
from services.replay.settings import Settings

PARTITIONS = 6

_ROWS = (
    "replay (serialize + validate + produce, acknowledged)",
    "replay, per CPU-second of the replay thread",
    "validation only (serialize + parse_event, no broker)",
    "bare produce of the same bytes (acknowledged)",
    "bare consume",
    "bare produce + consume",
)


def repeated_sample(count: int) -> list[Event]:
    """Return ``count`` events: the REES46 sample repeated, with unique ids."""
    sample = rees46.load(REES46_SAMPLE).events
    events = []
    for index in range(count):
        event = sample[index % len(sample)]
        repeat = index // len(sample)
        if repeat:
            event = event.model_copy(update={"event_id": f"{event.event_id}:r{repeat}"})
        events.append(event)
    return events


def fresh_topics(kafka: KafkaSettings) -> TopicSettings:
    """Create an events, dead-letter and catalog topic that no other run used."""
    suffix = uuid.uuid4().hex[:8]
    topics = TopicSettings(
        events=f"bench-events-{suffix}",
        dead_letters=f"bench-dlq-{suffix}",
        catalog=f"bench-catalog-{suffix}",
        partitions=PARTITIONS,
    )
    create_topics(
        kafka,
        [
            TopicSpec(topics.events, PARTITIONS),
            TopicSpec(topics.dead_letters, PARTITIONS),
            TopicSpec(topics.catalog, PARTITIONS, is_compacted=True),
        ],
    )
    return topics


def measure_replay(
    kafka: KafkaSettings, events: Sequence[Event]
) -> tuple[float, float]:
    """Return (events per second, events per CPU-second of the replay thread).

    The second number is what the replay's own thread could do with a whole
    core, which stays meaningful when other processes load the machine.
    """
    settings = Settings(kafka=kafka, topics=fresh_topics(kafka))
    replayer = Replayer(settings, show_progress=False)
    cpu_started = time.thread_time()
    summary = replayer.replay_events(events, source="dataset:bench")
    cpu_seconds = time.thread_time() - cpu_started
    if summary.events_published != len(events):
        raise RuntimeError(
            f"replay published {summary.events_published} of {len(events)} events; "
            f"rejected {dict(summary.rejected_by_reason)}"
        )
    return summary.events_per_second, len(events) / cpu_seconds


def measure_validation(events: Sequence[Event]) -> float:
    """Return events per second of serialization plus validation alone."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    for raw in serialize_events(events):
        if not isinstance(parse_event(raw, now=now), Event):
            raise RuntimeError("a sample event failed validation")
    return len(events) / (time.perf_counter() - started)


def measure_bare(
    kafka: KafkaSettings, values: Sequence[bytes], keys: Sequence[bytes]
) -> tuple[float, float, float]:
    """Return (produce, consume, pass-through) messages per second."""
    topic = fresh_topics(kafka).events
    settings = Settings(kafka=kafka)
    producer = Producer(
        {
            **producer_config(kafka, linger_ms=settings.linger_ms),
            "queue.buffering.max.messages": settings.queue_max_messages,
            "delivery.report.only.error": True,
        }
    )
    started = time.perf_counter()
    for index, (value, key) in enumerate(zip(values, keys, strict=True)):
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.1)
        if index % 4096 == 0:
            producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("bare produce: messages still queued after 60 s")
    produce_seconds = time.perf_counter() - started
    del producer

    consumer = Consumer(
        consumer_config(kafka, f"bench-{uuid.uuid4().hex[:8]}", fetch_wait_ms=100)
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    received = 0
    started = time.perf_counter()
    deadline = started + 120
    while received < len(values):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"bare consume: {received} of {len(values)} in 120 s")
        received += len(consumer.consume(num_messages=10_000, timeout=0.5))
    consume_seconds = time.perf_counter() - started
    consumer.close()
    count = len(values)
    return (
        count / produce_seconds,
        count / consume_seconds,
        count / (produce_seconds + consume_seconds),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)

    events = repeated_sample(args.events)
    values = serialize_events(events)
    keys = [event.user_id.encode() for event in events]
    load_before = os.getloadavg()[0]
    # Each round measures every variant once, so that load from other
    # processes that comes and goes spreads over all of them alike.
    runs: dict[str, list[float]] = {name: [] for name in _ROWS}
    with tempfile.TemporaryDirectory() as state_dir:
        server = start_broker(Path(state_dir), find_free_port())
        try:
            kafka = KafkaSettings(bootstrap=server.address)
            for _ in range(args.runs):
                replay, replay_per_core = measure_replay(kafka, events)
                produce, consume, pass_through = measure_bare(kafka, values, keys)
                for name, value in zip(
                    _ROWS,
                    (
                        replay,
                        replay_per_core,
                        measure_validation(events),
                        produce,
                        consume,
                        pass_through,
                    ),
                    strict=True,
                ):
                    runs[name].append(value)
        finally:
            server.stop()
    load_after = os.getloadavg()[0]

    medians = {name: statistics.median(measured) for name, measured in runs.items()}
    lines = [
        f"{args.events} events (REES46 sample repeated), {PARTITIONS} partitions, "
        f"median of {args.runs} runs, 1-minute load average {load_before:.1f} "
        f"before and {load_after:.1f} after on {os.cpu_count()} CPUs",
        "",
        "| measurement | median events/s | runs |",
        "|---|---:|---|",
    ]
    for name, measured in runs.items():
        lines.append(
            f"| {name} | {medians[name]:,.0f} | "
            + ", ".join(f"{value:,.0f}" for value in measured)
            + " |"
        )
    lines.append("")
    ratio = medians[_ROWS[0]] / medians[_ROWS[3]]
    lines.append(f"replay / bare produce: {ratio:.2f}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
