"""Benchmark the features stage: events/s and Redis bytes per active user.

Command::

    .venv/bin/python benchmarks/bench_features.py --users 10000 --repeats 3

It starts its own Tansu broker and redis-server on free loopback ports and
replays synthetic events of many users (Zipf-distributed item popularity,
85 % clicks, 10 % cart adds, 5 % purchases, sessions of 1-8 events). It
prints one Markdown table with medians over the repeats:

- broker pass-through: a confluent-kafka consume-and-produce loop over the
  same messages, the ceiling for any consumer on this machine, with the CPU
  time per message of this process and of the broker;
- features stage alone: ``FeatureStore.apply_batch`` on parsed events in
  batches of ``--batch-size``, with the CPU time per event of this process
  and of redis-server during that loop;
- plain-command floor: the same events sent as plain pipelined commands
  (counters, recent item, co-visitation, trending) without Lua, dedupe,
  decay, caps or snapshots, with its rate and the CPU time per event of
  this process and of redis-server;
- hot path: the consumer with no stage besides the features (validation,
  features, training examples, commits), from start to the last commit,
  with the CPU time per event of this process and of redis-server;
- Redis bytes per active user, per item and for the item-to-item lists,
  from ``MEMORY USAGE`` after the replay.

``--redis-config NAME=VALUE`` (repeatable) sets a redis-server parameter with
``CONFIG SET`` before the replay, to measure a server tuning such as
``zset-max-listpack-entries=0``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from schemas.catalog import ItemRecord
from schemas.events import Event, EventType
from services.bench.cpu import process_cpu_seconds
from services.common.kafka import (
    TopicSpec,
    consumer_config,
    create_topics,
    producer_config,
)
from services.common.redis_features import EventPosition, FeatureStore
from services.common.redis_pipeline import Command, run_pipelined
from services.common.settings import KafkaSettings, RedisSettings, TopicSettings
from services.features.catalog import CatalogWriter
from services.hotpath.__main__ import build_consumer
from services.hotpath.settings import HotPathSettings
from services.infra import find_free_port, start_broker, start_redis

START = datetime(2019, 10, 1, tzinfo=UTC)


def synthetic_events(
    users: int, items: int, seed: int
) -> tuple[list[Event], list[ItemRecord]]:
    """Return events of ``users`` users in event-time order, and their items."""
    rng = random.Random(seed)
    weights = [1.0 / (rank + 1) for rank in range(items)]
    records = [
        ItemRecord(
            item_id=f"i{index}",
            category_id=f"c{index % 50}",
            brand=f"b{index % 200}",
            price=round(rng.uniform(1, 500), 2),
            stock=rng.randint(0, 100),
            updated_at=START,
        )
        for index in range(items)
    ]
    events: list[Event] = []
    for user in range(users):
        time_seconds = rng.uniform(0, 86_400)
        for _ in range(rng.randint(1, 8)):
            item = rng.choices(range(items), weights)[0]
            roll = rng.random()
            event_type = (
                EventType.PURCHASE
                if roll < 0.05
                else EventType.CART_ADD
                if roll < 0.15
                else EventType.CLICK
            )
            events.append(
                Event(
                    event_id=f"u{user}-{len(events)}",
                    event_type=event_type,
                    user_id=f"u{user}",
                    item_id=f"i{item}",
                    event_time=START + timedelta(seconds=time_seconds),
                    price=records[item].price,
                )
            )
            time_seconds += rng.uniform(10, 240)
    events.sort(key=lambda event: event.event_time)
    return events, records


def produce(kafka: KafkaSettings, topic: str, events: Sequence[Event]) -> None:
    producer = Producer(producer_config(kafka))
    for event in events:
        producer.produce(
            topic,
            key=event.user_id.encode(),
            value=event.model_dump_json(exclude_none=True).encode(),
        )
        producer.poll(0)
    producer.flush(60)


@dataclass(frozen=True)
class PassThrough:
    """The broker pass-through: its rate and the CPU time per message."""

    messages_per_second: float
    client_us: float
    broker_us: float


def broker_pass_through(
    kafka: KafkaSettings, source: str, target: str, total: int, broker_pid: int
) -> PassThrough:
    """Measure a consume-and-produce loop over ``source``, from its first message.

    The CPU time per message is that of this process (the confluent-kafka
    consumer and producer) and of the broker process.
    """
    consumer = Consumer(consumer_config(kafka, f"bench-pass-{time.monotonic_ns()}"))
    producer = Producer(producer_config(kafka))
    consumer.subscribe([source])
    seen = 0
    started = client_cpu = broker_cpu = 0.0
    while seen < total:
        for message in consumer.consume(1000, 1.0):
            if message.error() is not None:
                continue
            if not seen:
                started = time.perf_counter()
                client_cpu = time.process_time()
                broker_cpu = process_cpu_seconds(broker_pid)
            producer.produce(target, key=message.key(), value=message.value())
            seen += 1
        producer.poll(0)
    producer.flush(60)
    elapsed = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu
    broker_cpu = process_cpu_seconds(broker_pid) - broker_cpu
    consumer.close()
    return PassThrough(
        messages_per_second=total / elapsed,
        client_us=client_cpu * 1e6 / total,
        broker_us=broker_cpu * 1e6 / total,
    )


def _redis_cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def features_alone(
    client: redis.Redis, prefix: str, events: Sequence[Event], batch_size: int
) -> tuple[float, float, float]:
    """Return events/s of FeatureStore.apply_batch over all events.

    Also returns the CPU microseconds per event spent in this process (all
    threads) and in redis-server. Unlike the rate, they barely move with the
    load of a shared machine.
    """
    store = FeatureStore(client, prefix)
    store.load_scripts()
    redis_cpu = _redis_cpu_seconds(client)
    process_cpu = time.process_time()
    started = time.perf_counter()
    for start in range(0, len(events), batch_size):
        chunk = events[start : start + batch_size]
        store.apply_batch(
            chunk, [EventPosition(0, start + i) for i in range(len(chunk))]
        )
    elapsed = time.perf_counter() - started
    process_cpu = time.process_time() - process_cpu
    redis_cpu = _redis_cpu_seconds(client) - redis_cpu
    per_event = 1e6 / len(events)
    return len(events) / elapsed, process_cpu * per_event, redis_cpu * per_event


@dataclass(frozen=True)
class Floor:
    """One pass of the plain-command floor: its rate and CPU time per event."""

    events_per_second: float
    python_us: float
    redis_us: float
    commands_per_event: float


def floor_commands(
    events: Sequence[Event], categories: Mapping[str, str | None], prefix: str
) -> Iterator[list[Command]]:
    """Yield, per event, the plain commands that every feature family needs.

    Per event these are the user hash read and written, two item counters,
    and one co-visitation increment each way per same-session partner (at
    most five). The shop-wide and category trending increments and one shop
    total follow. There is no Lua, dedupe, decay, cap, window, outbox or
    before-snapshot.
    """
    partners: dict[str, list[str]] = {}
    for event in events:
        user_key = f"{prefix}:{{u:{event.user_id}}}"
        item_key = f"{prefix}:{{i:{event.item_id}}}"
        code = event.event_type.value[0]
        seconds = event.event_time.timestamp()
        hour, day = int(seconds // 3600), int(seconds // 86_400)
        user_fields = (f"{code}h{hour % 2}", 1, f"{code}d{day % 2}", 1)
        commands: list[Command] = [
            ("HGETALL", user_key),
            ("HSET", user_key, *user_fields, "t", seconds, "r", event.item_id),
            ("EXPIRE", user_key, 9 * 86_400),
            ("HINCRBY", item_key, f"{code}h{hour}", 1),
            ("HINCRBY", item_key, f"{code}d{day}", 1),
            ("EXPIRE", item_key, 9 * 86_400),
        ]
        session = partners.setdefault(event.user_id, [])
        for other in session[-5:]:
            if other != event.item_id:
                commands.append(("ZINCRBY", f"{item_key}:cv", 1.0, other))
                other_key = f"{prefix}:{{i:{other}}}:cv"
                commands.append(("ZINCRBY", other_key, 1.0, event.item_id))
        session.append(event.item_id)
        category = categories.get(event.item_id) or ""
        commands.append(("ZINCRBY", f"{prefix}:trending", 1.0, event.item_id))
        commands.append(
            ("ZINCRBY", f"{prefix}:trending:{category}", 1.0, event.item_id)
        )
        commands.append(("HINCRBY", f"{prefix}:totals", f"{code}d{day}", 1))
        yield commands


FLOOR_WAYS = {
    "pipeline": "redis-py pipeline",
    "raw": "hiredis-packed, replies not decoded",
    "merged": "hiredis-packed, merged per batch, no reads",
}


def plain_commands(
    client: redis.Redis,
    events: Sequence[Event],
    records: Sequence[ItemRecord],
    batch_size: int,
    way: str,
) -> Floor:
    """Send the floor's commands, one pipeline per batch, and measure the pass.

    The floor shows how much of the features stage's redis-server time goes
    to the scripts' own work rather than to Redis's data structures, and
    what building and sending the writes costs this process before any
    feature is computed. ``way`` is one of :data:`FLOOR_WAYS`:

    - ``pipeline``: a redis-py pipeline, replies decoded by its callbacks;
    - ``raw``: ``run_pipelined``, where hiredis packs the commands and the
      replies stay undecoded;
    - ``merged``: as ``raw``, after merging the batch's writes into one
      ``HSET`` and one ``EXPIRE`` per user, one increment per counter field
      and one per sorted-set member. The user reads are left out. A design
      that keeps each user's state in the consumer's process sends at least
      this much.

    Each way writes under its own key prefix.
    """
    categories = {record.item_id: record.category_id for record in records}
    commands = 0
    redis_cpu = _redis_cpu_seconds(client)
    python_cpu = time.process_time()
    started = time.perf_counter()
    per_event = floor_commands(events, categories, f"floor-{way}")
    for start in range(0, len(events), batch_size):
        batch: list[Command] = []
        for _ in range(min(batch_size, len(events) - start)):
            batch.extend(next(per_event))
        if way == "merged":
            batch = _merged(batch)
        commands += len(batch)
        if way == "pipeline":
            pipe = client.pipeline(transaction=False)
            for command in batch:
                pipe.execute_command(*command)  # type: ignore[no-untyped-call]
            pipe.execute()
        else:
            run_pipelined(client, batch)
    elapsed = time.perf_counter() - started
    python_cpu = time.process_time() - python_cpu
    redis_cpu = _redis_cpu_seconds(client) - redis_cpu
    return Floor(
        events_per_second=len(events) / elapsed,
        python_us=python_cpu * 1e6 / len(events),
        redis_us=redis_cpu * 1e6 / len(events),
        commands_per_event=commands / len(events),
    )


def _merged(batch: Sequence[Command]) -> list[Command]:
    """Return a batch's writes merged per key and field, without its reads."""
    users: dict[Any, dict[Any, Any]] = {}
    increments: Counter[tuple[Any, Any]] = Counter()
    scores: defaultdict[tuple[Any, Any], float] = defaultdict(float)
    for name, key, *arguments in batch:
        if name == "HSET":
            fields = users.setdefault(key, {})
            fields.update(zip(arguments[::2], arguments[1::2], strict=True))
        elif name == "HINCRBY":
            increments[key, arguments[0]] += int(arguments[1])
        elif name == "ZINCRBY":
            scores[key, arguments[1]] += float(arguments[0])
    merged: list[Command] = []
    for key, fields in users.items():
        merged.append(
            ("HSET", key, *[part for pair in fields.items() for part in pair])
        )
        merged.append(("EXPIRE", key, 9 * 86_400))
    merged.extend(
        ("HINCRBY", key, field, count) for (key, field), count in increments.items()
    )
    merged.extend(
        ("ZINCRBY", key, score, member) for (key, member), score in scores.items()
    )
    return merged


def hot_path(
    settings: HotPathSettings, client: redis.Redis, total: int
) -> tuple[float, float, float]:
    """Return events/s of the hot path with the features stage alone.

    Also returns the CPU microseconds per event spent in this process (the
    consumer's threads, and the probe that waits for the last commit) and in
    redis-server, from start to the last commit.
    """
    consumer = build_consumer(settings, stages=[])
    worker = threading.Thread(target=consumer.run)
    probe = Consumer(consumer_config(settings.kafka, settings.group_id))
    partitions = [
        TopicPartition(settings.topics.events, p)
        for p in range(settings.topics.partitions)
    ]
    redis_cpu = _redis_cpu_seconds(client)
    process_cpu = time.process_time()
    started = time.perf_counter()
    worker.start()
    while True:
        committed = probe.committed(partitions, timeout=10)
        if sum(max(tp.offset, 0) for tp in committed) >= total:
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    process_cpu = time.process_time() - process_cpu
    redis_cpu = _redis_cpu_seconds(client) - redis_cpu
    consumer.stop()
    worker.join(30)
    probe.close()
    per_event = 1e6 / total
    return total / elapsed, process_cpu * per_event, redis_cpu * per_event


def memory_report(client: redis.Redis, prefix: str) -> dict[str, float]:
    """Return mean Redis bytes per user, per item and per item-to-item list."""
    groups: dict[str, list[int]] = {"user": [], "item": [], "pairs": [], "global": []}
    for key in client.scan_iter(f"{prefix}:*", count=2000):
        name = key.decode()[len(prefix) + 1 :]
        size = int(client.memory_usage(key, samples=0) or 0)
        if name.startswith("{u:"):
            groups["user"].append(size)
        elif name.startswith("{i:") and name.endswith((":cv", ":cc", ":cp")):
            groups["pairs"].append(size)
        elif name.startswith("{i:"):
            groups["item"].append(size)
        else:
            groups["global"].append(size)
    items = {
        key.decode().split("}")[0]
        for key in client.scan_iter(f"{prefix}:{{i:*", count=2000)
    }
    return {
        "users": float(len(groups["user"])),
        "bytes_per_user_mean": statistics.fmean(groups["user"]),
        "bytes_per_user_median": statistics.median(groups["user"]),
        "bytes_per_item": sum(groups["item"]) / max(len(items), 1),
        "pair_bytes_per_item": sum(groups["pairs"]) / max(len(items), 1),
        "pair_bytes_total": float(sum(groups["pairs"])),
        "global_bytes": float(sum(groups["global"])),
    }


def _floor_rows(floors: Sequence[Floor], client: str) -> list[tuple[str, str]]:
    commands = floors[0].commands_per_event
    python_us = statistics.median(floor.python_us for floor in floors)
    redis_us = statistics.median(floor.redis_us for floor in floors)
    return [
        (
            f"plain-command floor, {client} ({commands:.1f} commands per event, "
            "no Lua)",
            _rate([floor.events_per_second for floor in floors], "events/s"),
        ),
        (
            f"plain-command floor, {client}: CPU per event, Python / redis-server",
            f"{python_us:,.0f} / {redis_us:,.0f} µs",
        ),
    ]


def _rate(values: Sequence[float], unit: str) -> str:
    return f"{statistics.median(values):,.0f} {unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000, help="synthetic users")
    parser.add_argument("--items", type=int, default=5_000, help="catalog items")
    parser.add_argument("--batch-size", type=int, default=500, help="events per batch")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement")
    parser.add_argument("--seed", type=int, default=7, help="random seed")
    parser.add_argument(
        "--redis-config",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="redis-server parameter set with CONFIG SET before the replay",
    )
    args = parser.parse_args()
    redis_config = []
    for entry in args.redis_config:
        name, sep, value = entry.partition("=")
        if not sep or not name:
            parser.error(f"argument --redis-config: expected NAME=VALUE, got {entry!r}")
        redis_config.append((name, value))

    events, records = synthetic_events(args.users, args.items, args.seed)
    state_dir = Path(tempfile.mkdtemp(prefix="bench-features-"))
    broker = start_broker(state_dir, find_free_port())
    redis_server = start_redis(state_dir, find_free_port())
    try:
        kafka = KafkaSettings(bootstrap=broker.address)
        client = redis.Redis.from_url(f"redis://{redis_server.address}/0")
        for name, value in redis_config:
            client.config_set(name, value)
        passes: list[PassThrough] = []
        alone_rates, hot_rates = [], []
        python_cpu, redis_cpu = [], []
        floors: dict[str, list[Floor]] = {way: [] for way in FLOOR_WAYS}
        hot_python_cpu, hot_redis_cpu = [], []
        memory: dict[str, float] = {}
        for repeat in range(args.repeats):
            topics = TopicSettings(
                events=f"events-{repeat}",
                dead_letters=f"dlq-{repeat}",
                training_examples=f"training-{repeat}",
                partitions=1,
            )
            create_topics(
                kafka,
                [
                    TopicSpec(name, 1)
                    for name in (
                        topics.events,
                        topics.dead_letters,
                        topics.training_examples,
                        f"pass-{repeat}",
                    )
                ],
            )
            produce(kafka, topics.events, events)
            broker_pid = broker.pid()
            if broker_pid is None:
                raise SystemExit("the benchmark's broker is not running")
            passes.append(
                broker_pass_through(
                    kafka, topics.events, f"pass-{repeat}", len(events), broker_pid
                )
            )
            client.flushall()
            for prefix in ("alone", "hot"):
                writer = CatalogWriter(client, prefix)
                for record in records:
                    writer.write(record)
            rate, python_us, redis_us = features_alone(
                client, "alone", events, args.batch_size
            )
            alone_rates.append(rate)
            python_cpu.append(python_us)
            redis_cpu.append(redis_us)
            for way, runs in floors.items():
                runs.append(
                    plain_commands(client, events, records, args.batch_size, way)
                )
            settings = HotPathSettings(
                kafka=kafka,
                redis=RedisSettings(
                    url=f"redis://{redis_server.address}/0", key_prefix="hot"
                ),
                topics=topics,
                group_id=f"bench-hot-{repeat}",
                batch_size=args.batch_size,
                metrics_port=0,
            )
            rate, python_us, redis_us = hot_path(settings, client, len(events))
            hot_rates.append(rate)
            hot_python_cpu.append(python_us)
            hot_redis_cpu.append(redis_us)
            memory = memory_report(client, "alone")
    finally:
        redis_server.stop()
        broker.stop()

    rows = [
        (
            "broker pass-through (consume + produce)",
            _rate([run.messages_per_second for run in passes], "msg/s"),
        ),
        (
            "broker pass-through CPU per message: Python client / broker",
            f"{statistics.median(run.client_us for run in passes):,.1f} / "
            f"{statistics.median(run.broker_us for run in passes):,.1f} µs",
        ),
        ("features stage alone (apply_batch)", _rate(alone_rates, "events/s")),
        (
            "features stage CPU per event: Python / redis-server",
            f"{statistics.median(python_cpu):,.0f} / "
            f"{statistics.median(redis_cpu):,.0f} µs",
        ),
        *[
            row
            for way, runs in floors.items()
            for row in _floor_rows(runs, FLOOR_WAYS[way])
        ],
        (
            "hot path, features only (parse, apply, examples, commit)",
            _rate(hot_rates, "events/s"),
        ),
        (
            "hot path CPU per event: this process / redis-server",
            f"{statistics.median(hot_python_cpu):,.0f} / "
            f"{statistics.median(hot_redis_cpu):,.0f} µs",
        ),
        ("active users in Redis", f"{memory['users']:,.0f}"),
        (
            "Redis bytes per active user (mean / median)",
            f"{memory['bytes_per_user_mean']:,.0f} / "
            f"{memory['bytes_per_user_median']:,.0f}",
        ),
        ("Redis bytes per item (counts + catalog)", f"{memory['bytes_per_item']:,.0f}"),
        (
            "item-to-item lists, bytes per item / total",
            f"{memory['pair_bytes_per_item']:,.0f} / {memory['pair_bytes_total']:,.0f}",
        ),
        ("global keys (trending, totals)", f"{memory['global_bytes']:,.0f} bytes"),
    ]
    lines = [
        f"{len(events)} events of {args.users} users on {args.items} items, "
        f"batch size {args.batch_size}, median of {args.repeats} runs",
        "",
        "| measurement | value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows),
    ]
    # The table is the script's output.
    print("\n".join(lines))  # noqa: T201


if __name__ == "__main__":
    main()
