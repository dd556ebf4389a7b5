"""Measure the broker's own CPU for the hot path's traffic at a steady rate.

Command (from the repository root):

    .venv/bin/python benchmarks/bench_broker.py [--rates 1000,5000]
        [--seconds 10] [--set-ups produce,consume,relay] [--relays 2]
        [--fetch-waits-ms 10] [--linger-ms 0]

A backlog reaches the broker in large requests, which cost it little per
message. A steady stream of events, as a site sends them, arrives in small
produce requests, and consumers that must respond within milliseconds fetch
small amounts often. This script replays the committed REES46 sample at
each fixed rate into a private Tansu broker and measures the broker's CPU
time per event in three set-ups, each on fresh topics:

- ``produce``: the load generator alone, which sends each event at once as
  the whole-path benchmark's latency step does (``--linger-ms 0``);
- ``consume``: the same, plus one consumer group reading the events;
- ``relay``: the hot path's Kafka traffic with no work between consume and
  produce. ``--relays`` consumers in one group each take what has arrived,
  send a products slate and a training example per event, plus slates of
  the other surfaces at ``--other-slates`` per event, flush, and commit, as
  the hot path does per batch. A reader in its own group reads the products
  slates, as a site or the whole-path benchmark does.

Every consumer uses the fetch wait of ``--fetch-waits-ms`` (the hot path's
10 ms by default). The default message sizes are the means of the hot
path's messages in ``bench_hotpath.py --in-process --shop-scale 4
--max-candidates 50``: products slates of 4,760 bytes, a promotions slate
of 1,450 bytes on every event, a reviews slate of 933 bytes on 19 % of
events and training examples of 1,470 bytes. A set-up whose consumers
fall more than 60 s behind the last event stops the run with an error.

It prints a Markdown table: per rate, fetch wait and set-up, the broker's
CPU microseconds per event, the cores it kept busy, and this process's CPU
microseconds per event (the load generator and the consumers).
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from services.bench.cpu import CpuAccount
from services.common.kafka import (
    TopicSpec,
    consume_available,
    consumer_config,
    create_topics,
    producer_config,
)
from services.common.setting_loader import load_settings
from services.common.settings import KafkaSettings
from services.infra import find_free_port, start_broker
from services.replay.datasets import REES46_SAMPLE, rees46

PARTITIONS = 6
SET_UPS = ("produce", "consume", "relay")


@dataclass(frozen=True)
class Traffic:
    """The hot path's messages per event.

    Attributes:
        products_bytes: the size of the products slate, sent for every event.
        other_slates: slates of the other surfaces per event.
        other_bytes: the size of one of those.
        example_bytes: the size of the training example, sent for every event.
    """

    products_bytes: int
    other_slates: float
    other_bytes: int
    example_bytes: int


@dataclass(frozen=True)
class Result:
    """The CPU one set-up took at the rate the load generator reached."""

    set_up: str
    fetch_wait_ms: int
    rate: float
    events: int
    broker_us: float
    broker_cores: float
    client_us: float


class _Group:
    """Consumer threads that run until stopped. The first error stops them all."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self._counted = 0
        self._lock = threading.Lock()

    def count(self, events: int) -> None:
        """Add events that a consumer has finished (thread-safe)."""
        with self._lock:
            self._counted += events

    def wait_for(self, events: int, timeout_seconds: float) -> None:
        """Wait until ``events`` are counted; raise when they are not in time."""
        deadline = time.monotonic() + timeout_seconds
        while self._counted < events and not self.errors:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the consumers finished {self._counted} of {events} events "
                    f"within {timeout_seconds:.0f} s of the last one: they fell behind"
                )
            time.sleep(0.01)

    def start(self, target: Callable[..., None], *args: object) -> None:
        def run() -> None:
            try:
                target(self, *args)
            except BaseException as exc:
                self.errors.append(exc)
                self.stop.set()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
        if self.errors:
            raise RuntimeError(f"a consumer thread failed: {self.errors[0]!r}")


def _read(group: _Group, kafka: KafkaSettings, topic: str, wait: int) -> None:
    consumer = Consumer(consumer_config(kafka, _name("read"), fetch_wait_ms=wait))
    consumer.subscribe([topic])
    try:
        while not group.stop.is_set():
            group.count(len(consumer.consume(1000, 0.1)))
    finally:
        consumer.close()


def _relay(
    group: _Group,
    kafka: KafkaSettings,
    topics: dict[str, str],
    group_id: str,
    traffic: Traffic,
    wait: int,
) -> None:
    """Forward like the hot path: slates and an example per event, per batch."""
    consumer = Consumer(consumer_config(kafka, group_id, fetch_wait_ms=wait))
    producer = Producer(producer_config(kafka, linger_ms=2))
    consumer.subscribe([topics["events"]])
    products = b"p" * traffic.products_bytes
    other = b"o" * traffic.other_bytes
    example = b"x" * traffic.example_bytes
    others = itertools.cycle(
        [topics["bundles"], topics["promotions"], topics["reviews"]]
    )
    owed = 0.0
    try:
        while not group.stop.is_set():
            messages = consume_available(consumer, 500, 0.1)
            next_offsets: dict[int, int] = {}
            for message in messages:
                partition, offset = message.partition(), message.offset()
                if message.error() is not None or partition is None or offset is None:
                    continue
                next_offsets[partition] = offset + 1
                key = message.key()
                producer.produce(topics["products"], key=key, value=products)
                producer.produce(topics["examples"], key=key, value=example)
                owed += traffic.other_slates
                while owed >= 1.0:
                    producer.produce(next(others), key=key, value=other)
                    owed -= 1.0
            if not next_offsets:
                continue
            if producer.flush(30):
                raise RuntimeError("the broker did not acknowledge every slate")
            consumer.commit(
                offsets=[
                    TopicPartition(topics["events"], partition, offset)
                    for partition, offset in next_offsets.items()
                ],
                asynchronous=False,
            )
            group.count(len(messages))
    finally:
        consumer.close()


def measure(
    kafka: KafkaSettings,
    broker_pid: int,
    set_up: str,
    rate: float,
    values: Sequence[tuple[bytes, bytes]],
    traffic: Traffic,
    wait: int,
    relays: int,
    linger_ms: int,
) -> Result:
    """Produce ``values`` at ``rate`` per second and return the CPU it took."""
    stem = uuid.uuid4().hex[:8]
    topics = {
        name: f"{name}-{stem}"
        for name in ("events", "products", "bundles", "promotions", "reviews")
    }
    topics["examples"] = f"examples-{stem}"
    create_topics(kafka, [TopicSpec(topic, PARTITIONS) for topic in topics.values()])

    # ``group`` counts the events that the set-up must finish. The products
    # reader of the relay set-up only adds its fetches.
    group, readers = _Group(), _Group()
    if set_up == "consume":
        group.start(_read, kafka, topics["events"], wait)
    elif set_up == "relay":
        relay_group = _name("relay")
        for _ in range(relays):
            group.start(_relay, kafka, topics, relay_group, traffic, wait)
        readers.start(_read, kafka, topics["products"], wait)

    try:
        # Consumers join their groups before the measured stream starts.
        time.sleep(5.0)
        producer = Producer(producer_config(kafka, linger_ms=linger_ms))
        cpu = CpuAccount.start({"broker": [broker_pid], "clients": [0]})
        started = time.monotonic()
        for index, (key, value) in enumerate(values):
            pause = started + index / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            producer.produce(topics["events"], key=key, value=value)
            producer.poll(0)
        if producer.flush(30):
            raise RuntimeError("the broker did not acknowledge every event")
        offered = len(values) / (time.monotonic() - started)
        if set_up != "produce":
            group.wait_for(len(values), timeout_seconds=60.0)
        account = cpu.stop()
    finally:
        group.close()
        readers.close()

    per_event = account.per_event_us(len(values))
    return Result(
        set_up=set_up,
        fetch_wait_ms=wait,
        rate=offered,
        events=len(values),
        broker_us=per_event["broker"],
        broker_cores=account.seconds["broker"] / account.wall_seconds,
        client_us=per_event["clients"],
    )


def _name(role: str) -> str:
    return f"bench-broker-{role}-{uuid.uuid4().hex[:6]}"


def _events(count: int) -> list[tuple[bytes, bytes]]:
    """Return ``count`` keys and values: the sample's events, repeated."""
    sample = rees46.load(REES46_SAMPLE).events
    chosen = (sample[index % len(sample)] for index in range(count))
    return [
        (event.user_id.encode(), event.model_dump_json().encode()) for event in chosen
    ]


def _number(
    kind: type[float] | type[int], low: float, high: float
) -> Callable[[str], float]:
    """Return an argument type for one finite number from ``low`` to ``high``."""

    def parse(text: str) -> float:
        try:
            number = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a number' if kind is float else 'an integer'}, "
                f"got {text!r}"
            ) from None
        if not math.isfinite(number) or not low <= number <= high:
            raise argparse.ArgumentTypeError(
                f"expected {_show(low)} to {_show(high)}, got {text!r}"
            )
        return number

    return parse


def _show(number: float) -> str:
    return f"{number:,.0f}" if float(number).is_integer() else f"{number:,}"


def _numbers(
    kind: type[float] | type[int], low: float, high: float
) -> Callable[[str], list[float]]:
    """Return an argument type for distinct numbers separated by commas."""
    parse_one = _number(kind, low, high)

    def parse(text: str) -> list[float]:
        numbers = [parse_one(part) for part in text.split(",")]
        if len(set(numbers)) < len(numbers):
            raise argparse.ArgumentTypeError(f"expected no repeats, got {text!r}")
        return numbers

    return parse


def _set_ups(text: str) -> list[str]:
    chosen = text.split(",")
    unknown = [name for name in chosen if name not in SET_UPS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"expected set-ups among {', '.join(SET_UPS)}, got {unknown[0]!r}"
        )
    if len(set(chosen)) < len(chosen):
        raise argparse.ArgumentTypeError(f"expected no repeats, got {text!r}")
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rates",
        type=_numbers(float, 1, 100_000),
        default=[1000.0, 5000.0],
        help="events/s, e.g. 1000,5000",
    )
    parser.add_argument(
        "--set-ups",
        type=_set_ups,
        default=list(SET_UPS),
        help=f"some of {','.join(SET_UPS)}",
    )
    parser.add_argument(
        "--seconds",
        type=_number(float, 0.1, 3600),
        default=10.0,
        help="per set-up and rate",
    )
    parser.add_argument(
        "--relays", type=_number(int, 1, 16), default=2, help="relay consumers"
    )
    parser.add_argument(
        "--fetch-waits-ms",
        # librdkafka accepts fetch waits up to 300,000 ms and lingers up to
        # 900,000 ms.
        type=_numbers(int, 0, 300_000),
        default=[10],
        help="consumers' fetch waits to compare, e.g. 10,25 (default: 10, the "
        "hot path's)",
    )
    parser.add_argument(
        "--linger-ms",
        type=_number(int, 0, 900_000),
        default=0,
        help="the load generator's linger (default: 0, each event sent at once)",
    )
    sizes = _number(int, 1, 1_000_000)
    parser.add_argument("--products-bytes", type=sizes, default=4800)
    parser.add_argument("--other-slates", type=_number(float, 0, 10), default=1.2)
    parser.add_argument("--other-bytes", type=sizes, default=1400)
    parser.add_argument("--example-bytes", type=sizes, default=1500)
    args = parser.parse_args(argv)
    fewest = min(args.rates) * args.seconds
    if fewest < 1:
        parser.error(
            f"arguments --rates and --seconds: expected at least one event per "
            f"rate, got {fewest:g} at {min(args.rates):g} events/s"
        )
    traffic = Traffic(
        args.products_bytes, args.other_slates, args.other_bytes, args.example_bytes
    )

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-broker-") as state:
        port = find_free_port()
        broker = start_broker(Path(state), port)
        try:
            kafka = load_settings(KafkaSettings, bootstrap=broker.address)
            pid = broker.pid()
            if pid is None:
                raise RuntimeError("the broker stopped right after its start")
            for rate in args.rates:
                values = _events(int(rate * args.seconds))
                for wait, set_up in itertools.product(
                    args.fetch_waits_ms, args.set_ups
                ):
                    print(
                        f"{set_up} at {rate:.0f} events/s, fetch wait {wait} ms ...",
                        file=sys.stderr,
                    )
                    results.append(
                        measure(
                            kafka,
                            pid,
                            set_up,
                            rate,
                            values,
                            traffic,
                            int(wait),
                            args.relays,
                            args.linger_ms,
                        )
                    )
        finally:
            broker.stop()
    _print(args, results)
    return 0


def _print(args: argparse.Namespace, results: Sequence[Result]) -> None:
    print(
        f"Broker CPU at steady rates: load generator linger {args.linger_ms} ms, "
        f"{args.relays} relay consumers, {PARTITIONS} partitions; per relayed "
        f"event a products slate of {args.products_bytes} bytes, "
        f"{args.other_slates} other slates of {args.other_bytes} bytes and an "
        f"example of {args.example_bytes} bytes"
    )
    print()
    print(
        "| rate reached, events/s | fetch wait, ms | set-up | broker CPU µs per "
        "event | broker cores | clients' CPU µs per event |"
    )
    print("|---|---|---|---|---|---|")
    for result in results:
        print(
            f"| {result.rate:.0f} | {result.fetch_wait_ms} | {result.set_up} | "
            f"{result.broker_us:.0f} | {result.broker_cores:.2f} | "
            f"{result.client_us:.0f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
