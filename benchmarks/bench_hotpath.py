"""Measure the whole hot path: features, online learning, scoring and publishing.

Command (from the repository root):

    .venv/bin/python benchmarks/bench_hotpath.py [--events 20000] [--rate 1000]
        [--latency-seconds 20] [--batch-size 500] [--poll-timeout 0.5]
        [--instances 1] [--profile PATH]
    .venv/bin/python benchmarks/bench_hotpath.py --in-process [--events 3000]
        [--gc-threshold 100000]

The script starts a private Tansu broker and redis-server on free loopback
ports, loads the committed REES46 sample's catalog plus generated promotions
and reviews into Redis, and runs the hot-path consumer (features, learning and
scoring stages, exactly as deployed) in a separate process. Steps:

1. warm-up: the first copy of the sample (11,562 events) runs with the
   heuristic ranker; the training examples it emits train the multi-task
   ranker (MMoE with ESMM heads, default sizes, one epoch), which the later
   steps use;
2. throughput: ``--events`` events (the sample repeated with fresh ids and
   shifted times) are on the topic before the hot path starts; the sustained
   rate is the number of products slates divided by the time between the first
   and the last one read back from the topic;
3. latency: events are produced at ``--rate`` per second for
   ``--latency-seconds``; event-to-slate latency is the time from handing an
   event to the producer to reading its products slate back, and the slate's
   own ``latency_ms`` (consumer read to slate produce) is reported beside it;
4. broker pass-through: a plain confluent-kafka consume-and-produce loop over
   as many messages of the slate's size, in the same run.

It prints a Markdown table. Every number comes from one run on a machine
shared with other work, so rerun before comparing. Slates are read in strict
JSON mode, as sites read them, and a message on the products topic that is
not a valid slate stops the run with an error.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import Producer
from pydantic import ValidationError

from schemas.events import Event
from schemas.recommendations import Slate, Surface
from services.bench.cpu import CpuAccount
from services.bench.harness import (
    PARTITIONS,
    Bench,
    FixedModel,
    HotPathHandle,
    histogram_count,
    histogram_sum,
    measure_pass_through,
    settle_group,
    train_ranker,
)
from services.bench.offline import MemoryProducer, SettingsLoader, apply_wave
from services.bench.reader import MessageThread
from services.common.kafka import producer_config
from services.common.lifecycle import tune_garbage_collection
from services.common.settings import KafkaSettings, RedisSettings, TopicSettings
from services.features.catalog import CatalogWriter
from services.hotpath.settings import HotPathSettings
from services.infra import find_free_port, start_redis
from services.learner.settings import LearnerSettings
from services.replay.datasets import REES46_SAMPLE, rees46
from services.replay.generated import generate_catalog
from services.scorer.settings import ScorerSettings


@dataclass
class SlateClock:
    """Reads products slates and records when each one arrived.

    Slates are read in strict JSON mode, as sites read them. A message that is
    not a valid slate is counted in ``invalid``, and the next :meth:`wait_for`
    raises, because the event behind it would never get its slate.
    """

    kafka: KafkaSettings
    topic: str
    arrivals: dict[str, float] = field(default_factory=dict)
    slate_latency_ms: list[float] = field(default_factory=list)
    model_versions: set[str] = field(default_factory=set)
    invalid: int = 0
    first_error: str = ""

    def __post_init__(self) -> None:
        self._messages = MessageThread(self.kafka, self.topic, self._record)

    def wait_for(self, count: int, stall_seconds: float = 120.0) -> None:
        """Wait for ``count`` slates.

        Raises:
            RuntimeError: no slate arrived for ``stall_seconds``, or a message
                on the topic was not a valid slate.
        """
        seen, last_progress = len(self.arrivals), time.monotonic()
        while True:
            if self.invalid:
                raise RuntimeError(
                    f"{self.invalid} message(s) on {self.topic} were not valid "
                    f"slates, the first one with {self.first_error!r}; check "
                    "what the hot path publishes"
                )
            if len(self.arrivals) >= count:
                return
            if len(self.arrivals) != seen:
                seen, last_progress = len(self.arrivals), time.monotonic()
            if time.monotonic() - last_progress > stall_seconds:
                raise RuntimeError(
                    f"no slate for {stall_seconds:.0f} s after {seen} of {count}; "
                    "see the hot-path process's log above"
                )
            time.sleep(0.05)

    def close(self) -> None:
        self._messages.close()

    def _record(self, value: bytes, now: float) -> None:
        try:
            slate = Slate.model_validate_json(value, strict=True)
        except ValidationError as exc:
            # The error is set before the count, because wait_for reads both
            # on another thread.
            if not self.invalid:
                error = exc.errors()[0]
                location = ".".join(str(part) for part in error["loc"]) or "slate"
                self.first_error = f"{location}: {error['msg']}"
            self.invalid += 1
            return
        self.arrivals.setdefault(slate.trigger_event_id, now)
        self.slate_latency_ms.append(slate.latency_ms)
        self.model_versions.add(slate.model_version)


def load_catalog(client: redis.Redis, prefix: str) -> None:
    """Store the sample's items and generated promotions and reviews in Redis."""
    dataset = rees46.load(REES46_SAMPLE)
    catalog = generate_catalog(dataset.events, dataset.items, seed=11)
    writer = CatalogWriter(client, prefix)
    for record in [*dataset.items, *catalog.promotions, *catalog.reviews]:
        writer.write(record)


def repeated_sample(count: int, first_copy: int, shop_scale: int = 1) -> list[Event]:
    """Return ``count`` events: copies of the sample with fresh ids, later in time.

    Copy ``c`` is the sample shifted by ``c`` times its span. With
    ``shop_scale`` K above 1, each copy contains K groups of the sample's users,
    renamed per group, at the same event times: K times as many users are
    active at once, on the same catalog. Events are in event-time order.
    """
    sample = rees46.load(REES46_SAMPLE).events
    span = sample[-1].event_time - sample[0].event_time
    per_copy = len(sample) * shop_scale
    full_copies, remainder = divmod(count, per_copy)
    events = []
    for copy in range(first_copy, first_copy + full_copies + (remainder > 0)):
        # The last copy contributes only its first events, so only a prefix of
        # the sample is copied: enough for every group, plus the events that
        # share the prefix's last time, which the sort may place earlier.
        part = sample
        if copy == first_copy + full_copies:
            part = _time_prefix(sample, -(-remainder // shop_scale))
        for group in range(shop_scale):
            if not copy and not group:
                events.extend(part)
                continue
            suffix = f"~{group}" if group else ""
            events.extend(
                event.model_copy(
                    update={
                        "event_id": f"{event.event_id}:c{copy}{suffix}",
                        "user_id": f"{event.user_id}{suffix}",
                        "event_time": event.event_time + copy * span,
                    }
                )
                for event in part
            )
    # Stable: events at the same time stay in group order.
    events.sort(key=lambda event: event.event_time)
    return events[:count]


def _time_prefix(events: Sequence[Event], length: int) -> Sequence[Event]:
    """Return the first ``length`` events and every later one at the same time."""
    if length >= len(events):
        return events
    end = length
    while end < len(events) and events[end].event_time == events[length - 1].event_time:
        end += 1
    return events[:end]


@contextlib.contextmanager
def running(
    bench: Bench,
    topics: TopicSettings,
    artifact: str | None,
    instances: int,
    *,
    profile: bool = False,
) -> Iterator[tuple[SlateClock, HotPathHandle]]:
    """Run the hot path and a slate reader on ``topics`` inside the block.

    The block calls ``bench.finish``. When it raises instead, the hot-path
    processes are killed, so that none outlives the run.
    """
    clock = SlateClock(bench.kafka, topics.recommendations(Surface.PRODUCTS.value))
    try:
        handle = bench.start(topics, artifact, profile=profile, instances=instances)
        try:
            yield clock, handle
        except BaseException:
            bench.kill(handle)
            raise
    finally:
        clock.close()


def measure_throughput(
    bench: Bench, events: Sequence[Event], artifact: str, instances: int
) -> dict[str, Any]:
    topics = bench.topics()
    with running(bench, topics, artifact, instances, profile=True) as (clock, handle):
        # One event first: its slate shows that the group has formed, and only
        # the slates of the rest are timed.
        bench.publish(topics, events[:1])
        clock.wait_for(1)
        settle_group(instances)
        first_event_id = events[0].event_id
        cpu = CpuAccount.start(bench.cpu_groups(handle))
        bench.publish(topics, events[1:])
        clock.wait_for(len(events))
        account = cpu.stop()
        report = bench.finish(handle)
        report["cpu"] = account
    times = sorted(
        at for event_id, at in clock.arrivals.items() if event_id != first_event_id
    )
    report["events_per_second"] = (len(times) - 1) / (times[-1] - times[0])
    report["events"] = len(events)
    report["model_versions"] = sorted(clock.model_versions)
    return report


def measure_latency(
    bench: Bench, events: Sequence[Event], rate: float, artifact: str, instances: int
) -> dict[str, Any]:
    topics = bench.topics()
    with running(bench, topics, artifact, instances) as (clock, handle):
        producer = Producer(producer_config(bench.kafka, linger_ms=0))
        # Wait until the hot path has joined its group and publishes slates.
        bench.publish(topics, events[:1])
        clock.wait_for(1)
        settle_group(instances)

        sent: dict[str, float] = {}
        cpu = CpuAccount.start(bench.cpu_groups(handle))
        started = time.monotonic()
        for index, event in enumerate(events[1:]):
            due = started + index / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sent[event.event_id] = time.monotonic()
            producer.produce(
                topics.events, key=event.user_id.encode(), value=event.model_dump_json()
            )
            producer.poll(0)
        producer.flush(60)
        offered = (len(events) - 1) / (time.monotonic() - started)
        clock.wait_for(len(events))
        account = cpu.stop()
        report = bench.finish(handle)
        report["cpu"] = account
    latencies = sorted(
        (clock.arrivals[event_id] - at) * 1000.0 for event_id, at in sent.items()
    )
    report["offered_rate"] = offered
    report["events"] = len(events)
    report["end_to_end_ms"] = _percentiles(latencies)
    report["slate_ms"] = _percentiles(sorted(clock.slate_latency_ms[1:]))
    return report


def _waves(events: Sequence[Event]) -> list[list[Event]]:
    """Split events into contiguous runs with no user twice, as the hot path does."""
    waves: list[list[Event]] = [[]]
    users: set[str] = set()
    for event in events:
        if event.user_id in users:
            waves.append([])
            users.clear()
        waves[-1].append(event)
        users.add(event.user_id)
    return [wave for wave in waves if wave]


def measure_in_process(
    state_dir: Path,
    count: int,
    gc_threshold: int,
    shop_scale: int,
    learner: LearnerSettings,
    scorer: ScorerSettings,
) -> dict[str, Any]:
    """Run the three stages in this process on one Redis and time them.

    Stage costs are CPU seconds of this process (``time.process_time``), which
    other work on a shared machine disturbs far less than wall time. The
    ranker is the default-size model trained for one epoch on synthetic
    examples, and slates go to memory instead of Kafka. The digest covers each
    slate's trigger, surface, model and items (id, rank, score to 9 decimals,
    source, promotion, review), so two code versions can be checked for equal
    output. After set-up the garbage collector is tuned with ``gc_threshold``
    as the hot-path process tunes it (0: Python's default).
    """
    import hashlib

    import torch

    from models.multitask.dataset import build_training_set
    from models.multitask.model import ModelConfig
    from models.multitask.ranker import Ranker
    from models.multitask.synthetic import generate_examples
    from models.multitask.train import TrainConfig, fit_feature_spec, train_new_model
    from services.common.redis_features import FeatureStore
    from services.learner.stage import LearningStage
    from services.scorer.metrics import CANDIDATES_PER_EVENT
    from services.scorer.stage import build_scoring_stage

    torch.set_num_threads(1)
    server = start_redis(state_dir, find_free_port())
    try:
        url = f"redis://{server.address}/0"
        client = redis.Redis.from_url(url)
        prefix = f"inproc{uuid.uuid4().hex[:6]}"
        load_catalog(client, prefix)
        rows = build_training_set(generate_examples(2000, seed=3))
        spec = fit_feature_spec(rows)
        model, _ = train_new_model(spec, ModelConfig(), rows, TrainConfig(epochs=1))
        ranker = Ranker(model, spec, "ranker-synthetic")
        redis_settings = RedisSettings(url=url, key_prefix=prefix)
        store = FeatureStore(client, prefix)
        learning = LearningStage(
            learner.model_copy(
                update={"redis": redis_settings, "checkpoint_dir": state_dir / "ck"}
            ),
            client,
        )
        producer = MemoryProducer()
        scoring = build_scoring_stage(
            scorer.model_copy(update={"redis": redis_settings}),
            client,
            producer,  # type: ignore[arg-type]
            models=FixedModel(ranker),
            signals=learning,
            features=store,
        )
        seconds = {"features": 0.0, "learning": 0.0, "scoring": 0.0}
        offset = 0
        waves = _waves(repeated_sample(count, first_copy=0, shop_scale=shop_scale))
        tune_garbage_collection(gc_threshold)
        wall_started = time.perf_counter()
        for wave in waves:
            started = time.process_time()
            applied = apply_wave(store, wave, offset)
            offset += len(wave)
            learned = time.process_time()
            learning.process(applied)
            scored = time.process_time()
            scoring.process(applied)
            finished = time.process_time()
            seconds["features"] += learned - started
            seconds["learning"] += scored - learned
            seconds["scoring"] += finished - scored
        wall = time.perf_counter() - wall_started
    finally:
        server.stop()

    digest = hashlib.sha256()
    for value in producer.values:
        # Strict, as sites read slates: an invalid slate stops the run.
        slate = Slate.model_validate_json(value, strict=True)
        items = [
            (
                item.item_id,
                item.rank,
                round(item.score, 9),
                item.source.value,
                item.promotion_id,
                item.review_id,
            )
            for item in slate.items
        ]
        key = (slate.trigger_event_id, slate.surface.value, slate.model_version, items)
        digest.update(repr(key).encode())
    return {
        "events": count,
        "shop_scale": shop_scale,
        "waves": len(waves),
        "slates": len(producer.values),
        "candidates": histogram_sum(CANDIDATES_PER_EVENT, {})
        / max(histogram_count(CANDIDATES_PER_EVENT), 1.0),
        "seconds": seconds,
        "wall": wall,
        "digest": digest.hexdigest()[:16],
    }


def _in_process_settings(
    parser: argparse.ArgumentParser, max_candidates: int | None
) -> tuple[LearnerSettings, ScorerSettings]:
    """Read the stages' settings as the services do, or exit with every invalid one."""
    loader = SettingsLoader()
    learner = loader.load(LearnerSettings)
    # No item cache: cached vectors depend on wall time, which would make the
    # digest differ between runs.
    scorer = loader.load(ScorerSettings, item_cache_ttl_seconds=0.0)
    loader.exit_if_invalid(parser)
    if max_candidates is not None:
        candidates = scorer.candidates.model_copy(
            update={"max_candidates": max_candidates}
        )
        scorer = scorer.model_copy(update={"candidates": candidates})
    return learner, scorer


def _print_in_process(report: dict[str, Any]) -> None:
    events = report["events"]
    seconds = report["seconds"]
    print(
        f"In process, {events} events (shop scale {report['shop_scale']}) in "
        f"{report['waves']} waves, {report['slates']} slates, "
        f"slate digest {report['digest']}"
    )
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| candidates scored per event (mean) | {report['candidates']:.1f} |")
    for stage in ("features", "learning", "scoring"):
        per_event = seconds[stage] / events * 1e6
        print(f"| {stage} stage, CPU µs per event | {per_event:.0f} |")
    total = sum(seconds.values())
    print(f"| all stages, events per CPU second | {events / total:.0f} |")
    rate = events / report["wall"]
    print(f"| wall-clock events/s (Redis in another process) | {rate:.0f} |")


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    quantiles = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": quantiles[49], "p95": quantiles[94], "p99": quantiles[98]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="throughput events")
    parser.add_argument("--rate", type=float, default=1000.0, help="latency events/s")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--batch-size", type=int, default=500, help="hot-path batch")
    parser.add_argument(
        "--poll-timeout",
        type=float,
        default=0.5,
        help="seconds the hot path waits for the first message of a batch "
        "(default: 0.5, as deployed)",
    )
    parser.add_argument(
        "--instances",
        type=int,
        default=1,
        help="hot-path processes in one consumer group, for the throughput and "
        "latency steps (the warm-up uses one)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="only run the three stages in this process on --events sample "
        "events and print their CPU time and a digest of the slates",
    )
    parser.add_argument(
        "--gc-threshold",
        type=int,
        default=HotPathSettings.model_fields["gc_threshold"].default,
        help="with --in-process: young-generation garbage-collection threshold "
        "set after start-up, as CARTWHEEL_HOTPATH_GC_THRESHOLD sets it in the "
        "hot path (default: the hot path's default; 0 keeps Python's)",
    )
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="write a cProfile dump of the hot-path process's throughput step "
        "(profiling slows it, so its numbers are not comparable)",
    )
    parser.add_argument(
        "--shop-scale",
        type=int,
        default=1,
        metavar="K",
        help="copies of the sample's users active at the same time in the "
        "measured events: K times the users and K times the events per second "
        "of event time, on the same catalog (default: 1, the sample as it is)",
    )
    parser.add_argument(
        "--max-candidates",
        type=int,
        metavar="N",
        help="candidates kept for ranking per event, as "
        "CARTWHEEL_SCORER_CANDIDATES__MAX_CANDIDATES sets it (default: the "
        "scorer's default)",
    )
    args = parser.parse_args(argv)
    if args.instances < 1:
        parser.error(f"argument --instances: expected 1 or more, got {args.instances}")
    if args.events < 1:
        parser.error(f"argument --events: expected 1 or more, got {args.events}")
    if args.shop_scale < 1:
        parser.error(
            f"argument --shop-scale: expected 1 or more, got {args.shop_scale}"
        )
    if args.max_candidates is not None and not 1 <= args.max_candidates <= 1000:
        parser.error(
            f"argument --max-candidates: expected 1 to 1000, got {args.max_candidates}"
        )

    if args.in_process:
        learner, scorer = _in_process_settings(parser, args.max_candidates)
        with tempfile.TemporaryDirectory(prefix="bench-hotpath-") as state:
            _print_in_process(
                measure_in_process(
                    Path(state),
                    args.events,
                    args.gc_threshold,
                    args.shop_scale,
                    learner,
                    scorer,
                )
            )
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-hotpath-") as state:
        bench = Bench(
            Path(state),
            args.batch_size,
            args.poll_timeout,
            args.profile,
            max_candidates=args.max_candidates,
        )
        try:
            client = redis.Redis.from_url(bench.redis_url)
            load_catalog(client, bench.key_prefix)
            sample_size = len(rees46.load(REES46_SAMPLE).events)

            print("warm-up with the heuristic ranker ...", file=sys.stderr)
            warm_topics = bench.topics()
            warm_events = repeated_sample(sample_size, first_copy=0)
            bench.publish(warm_topics, warm_events)
            with running(bench, warm_topics, None, 1) as (clock, handle):
                clock.wait_for(len(warm_events))
                bench.finish(handle)
            print("training the multi-task ranker ...", file=sys.stderr)
            artifact = train_ranker(bench, warm_topics, len(warm_events))

            print("throughput ...", file=sys.stderr)
            throughput = measure_throughput(
                bench,
                repeated_sample(args.events, first_copy=1, shop_scale=args.shop_scale),
                artifact,
                args.instances,
            )
            print("latency ...", file=sys.stderr)
            latency_count = int(args.rate * args.latency_seconds) + 1
            copies = 2 + args.events // (sample_size * args.shop_scale)
            latency = measure_latency(
                bench,
                repeated_sample(
                    latency_count, first_copy=copies, shop_scale=args.shop_scale
                ),
                args.rate,
                artifact,
                args.instances,
            )
            print("broker pass-through ...", file=sys.stderr)
            pass_through = measure_pass_through(bench, args.events, 1500)
        finally:
            bench.close()

    _print_table(args, throughput, latency, pass_through)
    return 0


def _print_table(
    args: argparse.Namespace,
    throughput: dict[str, Any],
    latency: dict[str, Any],
    pass_through: float,
) -> None:
    seconds = throughput["stage_seconds"]
    events = throughput["events"]
    print(
        f"Hot path, {events} events, batch {args.batch_size}, poll timeout "
        f"{args.poll_timeout} s, {PARTITIONS} partitions, "
        f"{args.instances} hot-path process(es), shop scale {args.shop_scale}"
    )
    print(f"model: {', '.join(throughput['model_versions'])}")
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| sustained throughput, events/s | {throughput['events_per_second']:.0f} |")
    print(f"| candidates scored per event (mean) | {throughput['candidates']:.1f} |")
    for stage in ("features", "learning", "scoring"):
        per_event = seconds[stage] / events * 1e6
        print(f"| {stage} stage, µs per event (throughput run) | {per_event:.0f} |")
    offered = latency["offered_rate"]
    for name, key in (("event-to-slate", "end_to_end_ms"), ("in-process", "slate_ms")):
        values = latency[key]
        print(
            f"| {name} latency at {offered:.0f} events/s, ms p50 / p95 / p99 | "
            f"{values['p50']:.1f} / {values['p95']:.1f} / {values['p99']:.1f} |"
        )
    print(
        f"| broker pass-through (consume + produce), messages/s | {pass_through:.0f} |"
    )
    print()
    print(
        "CPU per event by process, over each step (the benchmark process "
        "produces the events and reads the products slates back):"
    )
    print()
    names = list(throughput["cpu"].seconds)
    print(f"| step | {' | '.join(names)} | all | cores busy |")
    print(f"|---|{'---|' * (len(names) + 2)}")
    for step, report, events in (
        ("throughput", throughput, throughput["events"]),
        (f"latency at {offered:.0f} events/s", latency, latency["events"]),
    ):
        account = report["cpu"]
        per_event = account.per_event_us(events - 1)
        cells = " | ".join(f"{per_event[name]:.0f} µs" for name in names)
        print(
            f"| {step} | {cells} | {sum(per_event.values()):.0f} µs | "
            f"{account.cores_busy:.2f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
