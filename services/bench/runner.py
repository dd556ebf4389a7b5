"""Run the hot path end to end on a synthetic load calibrated on real samples.

Steps: fit a :class:`~services.bench.profile.LoadProfile` on the chosen
datasets, build a synthetic shop sized for the requested events, start a
private broker and redis-server, store the shop's catalog (plus generated
promotions and reviews) in Redis, then:

1. warm-up: the stream's first events run through the hot path with the
   heuristic ranker, and their training examples train the multi-task ranker;
2. measured phase: the rest of the stream is produced while the hot path (now
   with that ranker) turns events into slates. Production is paced by the
   requested rate and held back when more events than the backlog limit wait
   for their slate, so neither the bench nor the broker keeps the whole
   stream. The phase ends when every event has its slate or the time limit
   has passed;
3. a bare consume-and-produce loop over as many messages of a slate's size,
   in the same run, as the broker's pass-through.

Everything started here is stopped on the way out, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import itertools
import logging
import math
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import Producer

from schemas.events import Event
from schemas.features import FeatureKeys
from schemas.recommendations import Surface
from services.bench.generator import (
    ShopSize,
    SyntheticShop,
    generate_events,
)
from services.bench.harness import (
    Bench,
    HotPathHandle,
    measure_pass_through,
    settle_group,
    train_ranker,
)
from services.bench.profile import LoadProfile, fit_profile
from services.bench.reader import SlateReader, user_bitmap
from services.common.errors import InfrastructureError
from services.common.kafka import producer_config
from services.common.settings import TopicSettings
from services.features.catalog import CatalogWriter
from services.replay.datasets import load_dataset
from services.replay.generated import generate_catalog

__all__ = ["BenchRun", "calibrate", "run_bench"]

logger = logging.getLogger(__name__)

# Events whose promotions and reviews are generated: enough to pick the
# leading brands, categories and items of the synthetic shop.
_CATALOG_PREVIEW_EVENTS = 20_000
_PROGRESS_SECONDS = 5.0
# With no new slate for this long while events wait, the hot path is stuck.
_STALL_SECONDS = 180.0
_PASS_THROUGH_MESSAGES = (10_000, 200_000)
_MEMORY_SAMPLE_USERS = 200

Say = Callable[[str], None]


@dataclass(frozen=True)
class BenchRun:
    """Settings of one ``cartwheel bench`` run.

    Attributes:
        events: events of the measured phase.
        data_dir: folder of the datasets other than the committed sample.
        rate: events per second to offer; None offers them as fast as the
            backlog limit lets through.
        seed: seeds the shop and the stream.
        calibrate_on: datasets the profile is fitted on.
        max_seconds: time limit of the measured phase; None waits for every
            event's slate.
        warmup_events: events before the measured phase, whose training
            examples train the ranker; 0 keeps the heuristic ranker.
        max_backlog: most events sent that have no slate yet.
        users: users of the synthetic shop; None sizes it from the events.
        items: items of the synthetic shop; None sizes it from the events.
        batch_size: the hot path's batch size.
        poll_timeout: seconds the hot path waits for the first message of a batch.
        instances: hot-path processes in the consumer group.
    """

    events: int
    data_dir: Path
    rate: float | None = None
    seed: int = 1
    calibrate_on: tuple[str, ...] = ("rees46",)
    max_seconds: float | None = None
    warmup_events: int = 5_000
    max_backlog: int = 20_000
    users: int | None = None
    items: int | None = None
    batch_size: int = 500
    poll_timeout: float = 0.5
    instances: int = 1


def calibrate(run: BenchRun) -> LoadProfile:
    """Fit the load profile on the run's datasets."""
    datasets = [
        load_dataset(name, run.data_dir, data_dir_source="CARTWHEEL_REPLAY_DATA_DIR")
        for name in run.calibrate_on
    ]
    return fit_profile(datasets)


def build_shop(run: BenchRun, profile: LoadProfile) -> SyntheticShop:
    """Return the synthetic shop sized for the run's events."""
    total = run.warmup_events + run.events
    size = ShopSize.scaled(profile, total, users=run.users, items=run.items)
    return SyntheticShop(profile, size, run.seed)


def run_bench(run: BenchRun, say: Say) -> dict[str, Any]:
    """Run the bench and return every measured number.

    Raises:
        InfrastructureError: the hot path stopped or stalled.
    """
    say(f"fitting the load profile on {', '.join(run.calibrate_on)}")
    profile = calibrate(run)
    shop = build_shop(run, profile)
    say(
        f"synthetic shop: {shop.size.users:,} users, {shop.size.items:,} items, "
        f"{shop.size.categories:,} categories, {shop.size.brands:,} brands"
    )
    with tempfile.TemporaryDirectory(prefix="cartwheel-bench-") as state:
        bench = Bench(Path(state), run.batch_size, run.poll_timeout)
        try:
            say(f"broker on {bench.kafka.bootstrap}, redis-server on {bench.redis_url}")
            return _run_phases(run, profile, shop, bench, say)
        finally:
            bench.close()
            say("stopped the broker and redis-server")


def _run_phases(
    run: BenchRun,
    profile: LoadProfile,
    shop: SyntheticShop,
    bench: Bench,
    say: Say,
) -> dict[str, Any]:
    client = redis.Redis.from_url(bench.redis_url)
    total = run.warmup_events + run.events
    _store_catalog(client, bench.key_prefix, shop, run.seed, total)
    baseline = int(client.info("memory")["used_memory"])
    stream = generate_events(shop, run.warmup_events + run.events, run.seed)
    users = user_bitmap(shop.size.users)

    artifact = None
    warmup: dict[str, Any] = {}
    if run.warmup_events:
        say(f"warm-up: {run.warmup_events:,} events with the heuristic ranker")
        topics = bench.topics()
        warmup = _drive(
            bench,
            topics,
            stream,
            _Load(run.warmup_events, None, run),
            None,
            (users, total),
            say,
        )
        say("training the multi-task ranker on the warm-up's training examples")
        artifact = train_ranker(bench, topics, run.warmup_events)

    limit = f", at most {run.max_seconds:.0f} s" if run.max_seconds else ""
    say(f"measured phase: {run.events:,} events{limit}")
    measured = _drive(
        bench,
        bench.topics(),
        stream,
        _Load(run.events, run.max_seconds, run),
        artifact,
        (users, total),
        say,
    )
    memory = _memory(client, bench.key_prefix, baseline, users)

    slate_bytes = max(1, round(measured["mean_slate_bytes"]))
    messages = min(
        max(measured["slates"], _PASS_THROUGH_MESSAGES[0]), _PASS_THROUGH_MESSAGES[1]
    )
    say(f"broker pass-through: {messages:,} messages of {slate_bytes} bytes")
    pass_through = measure_pass_through(bench, messages, slate_bytes)
    return {
        "run": {
            "events": run.events,
            "warmup_events": run.warmup_events,
            "rate": run.rate,
            "seed": run.seed,
            "max_seconds": run.max_seconds,
            "max_backlog": run.max_backlog,
            "batch_size": run.batch_size,
            "poll_timeout_seconds": run.poll_timeout,
            "instances": run.instances,
            "calibrate_on": list(run.calibrate_on),
        },
        "shop": {
            "users": shop.size.users,
            "items": shop.size.items,
            "categories": shop.size.categories,
            "brands": shop.size.brands,
            "sessions_per_second": shop.size.sessions_per_second,
        },
        "warmup": warmup,
        "measured": measured,
        "memory": memory,
        "pass_through": {
            "messages": messages,
            "bytes": slate_bytes,
            "messages_per_second": pass_through,
        },
        "profile": profile.model_dump(mode="json"),
    }


def _store_catalog(
    client: redis.Redis, prefix: str, shop: SyntheticShop, seed: int, events: int
) -> None:
    """Store the shop's items and promotions and reviews generated for them."""
    writer = CatalogWriter(client, prefix)
    items = list(shop.items())
    preview = list(generate_events(shop, min(_CATALOG_PREVIEW_EVENTS, events), seed))
    generated = generate_catalog(preview, items, seed=seed)
    for item in items:
        writer.write(item)
    for promotion in generated.promotions:
        writer.write(promotion)
    for review in generated.reviews:
        writer.write(review)


@dataclass(frozen=True)
class _Load:
    """How many events a phase sends, how fast and for how long."""

    events: int
    max_seconds: float | None
    run: BenchRun


def _drive(
    bench: Bench,
    topics: TopicSettings,
    stream: Iterator[Event],
    load: _Load,
    artifact: str | None,
    bitmaps: tuple[bytearray, int],
    say: Say,
) -> dict[str, Any]:
    """Send ``load.events`` events of ``stream`` through the hot path, read slates."""
    reader = SlateReader(
        bench.kafka, topics.recommendations(Surface.PRODUCTS.value), *bitmaps
    )
    handle = bench.start(topics, artifact, instances=load.run.instances)
    sender = _Sender(bench, topics.events, stream, load, reader)
    finished = False
    try:
        # The first event waits for the hot path to join its group, so the
        # time it takes to start stays out of the measurement.
        sender.send_first()
        _wait(reader, handle, lambda: reader.slates >= 1, None, say, sender)
        settle_group(load.run.instances)
        reader.restart_rate()
        sender.start()
        started = time.monotonic()
        stopped_by = _wait(
            reader,
            handle,
            lambda: sender.is_done and reader.slates >= sender.sent,
            load.max_seconds,
            say,
            sender,
        )
        seconds = time.monotonic() - started
        # Read the counts now, because after a time limit the processes finish
        # their batches, and those slates fall outside the measured window.
        window = {**reader.summary(), "events_per_second": reader.rate()}
        sender.stop()
        stages = bench.finish(handle)
        finished = True
    finally:
        sender.stop()
        if not finished:
            bench.kill(handle)
        reader.close()
    # Stage costs cover every event processed, including those after the limit.
    processed = max(1, reader.slates)
    return {
        **window,
        "events_sent": sender.sent,
        "stopped_by": stopped_by,
        "seconds": seconds,
        "sending_seconds": sender.elapsed(),
        "candidates_per_event": stages["candidates"],
        "stage_ms_per_event": {
            stage: stage_seconds * 1000.0 / processed
            for stage, stage_seconds in stages["stage_seconds"].items()
        },
    }


def _wait(
    reader: SlateReader,
    handle: HotPathHandle,
    is_done: Callable[[], bool],
    max_seconds: float | None,
    say: Say,
    sender: _Sender,
) -> str:
    """Wait until ``is_done``, the time limit or a stall; print progress."""
    started = last_print = last_progress = time.monotonic()
    seen = reader.slates
    printed = seen
    while not is_done():
        now = time.monotonic()
        if max_seconds is not None and now - started >= max_seconds:
            return "max-seconds"
        if not handle.is_alive():
            raise InfrastructureError(
                "a hot-path process stopped; see its output above"
            )
        if reader.slates != seen:
            seen, last_progress = reader.slates, now
        elif now - last_progress > _STALL_SECONDS:
            raise InfrastructureError(
                f"no slate for {_STALL_SECONDS:.0f} s after {seen:,} slates with "
                f"{sender.sent - seen:,} events waiting; see the output above"
            )
        if now - last_print >= _PROGRESS_SECONDS:
            recent = (reader.slates - printed) / (now - last_print)
            p99 = reader.end_to_end.percentile(0.99)
            latency = "no slate yet" if math.isnan(p99) else f"p99 {p99:,.0f} ms"
            say(
                f"{now - started:6.0f} s  sent {sender.sent:,}  slates "
                f"{reader.slates:,}  {recent:,.0f} events/s  {latency}"
            )
            last_print, printed = now, reader.slates
        time.sleep(0.1)
    return "all events"


class _Sender:
    """Produces a phase's events on a thread, paced and held to the backlog."""

    def __init__(
        self,
        bench: Bench,
        topic: str,
        stream: Iterator[Event],
        load: _Load,
        reader: SlateReader,
    ) -> None:
        self._producer = Producer(producer_config(bench.kafka, linger_ms=2))
        self._topic = topic
        self._stream = itertools.islice(stream, load.events)
        self._rate = load.run.rate
        self._max_backlog = load.run.max_backlog
        self._reader = reader
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started: float | None = None
        self._ended: float | None = None
        self.sent = 0
        self.is_done = False

    def send_first(self) -> None:
        """Send the phase's first event and wait for the broker to take it."""
        event = next(self._stream, None)
        if event is not None:
            self._send(event)
        self._producer.flush(30)

    def start(self) -> None:
        """Send the other events on the thread."""
        self._started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        """Stop sending and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def elapsed(self) -> float:
        """Return the seconds from :meth:`start` to the last event's send."""
        if self._started is None:
            return 0.0
        return (self._ended or time.monotonic()) - self._started

    def _run(self) -> None:
        started = self._started or time.monotonic()
        for number, event in enumerate(self._stream):
            if self._stop.is_set():
                break
            if self._rate:
                pause = started + number / self._rate - time.monotonic()
                if pause > 0:
                    self._stop.wait(pause)
            while (
                self.sent - self._reader.slates > self._max_backlog
                and not self._stop.is_set()
            ):
                self._producer.poll(0.01)
            self._send(event)
        self._ended = time.monotonic()
        self._producer.flush(30)
        self.is_done = True

    def _send(self, event: Event) -> None:
        index = int(event.event_id.rsplit("-", 1)[1])
        self._reader.mark_sent(index, time.monotonic())
        while True:
            try:
                self._producer.produce(
                    self._topic,
                    key=event.user_id.encode(),
                    value=event.model_dump_json(),
                )
                break
            except BufferError:
                # The local queue is full; serve delivery reports and retry.
                self._producer.poll(0.1)
        self._producer.poll(0)
        self.sent += 1


def _memory(
    client: redis.Redis, prefix: str, baseline: int, users: bytearray
) -> dict[str, Any]:
    """Return Redis memory growth per active user and a sample of user keys."""
    used = int(client.info("memory")["used_memory"])
    active = sum(byte.bit_count() for byte in users)
    keys = FeatureKeys(prefix)
    sampled = []
    for user in _set_bits(users, _MEMORY_SAMPLE_USERS):
        user_id = SyntheticShop.user_id(user)
        total = 0
        for key in (keys.user(user_id), keys.user_outbox(user_id)):
            total += int(client.memory_usage(key) or 0)
        sampled.append(total)
    return {
        "used_memory_bytes": used,
        "growth_bytes": used - baseline,
        "active_users": active,
        "growth_bytes_per_active_user": (used - baseline) / max(1, active),
        "user_key_bytes_mean": sum(sampled) / max(1, len(sampled)),
        "user_keys_sampled": len(sampled),
    }


def _set_bits(bits: bytearray, limit: int) -> Iterator[int]:
    found = 0
    for position, byte in enumerate(bits):
        for bit in range(8):
            if byte & (1 << bit):
                yield position * 8 + bit
                found += 1
                if found >= limit:
                    return


def say_to_stderr(text: str) -> None:
    """Write one progress line to stderr."""
    sys.stderr.write(f"bench: {text}\n")
    sys.stderr.flush()
