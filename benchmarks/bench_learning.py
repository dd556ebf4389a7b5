"""Measure the cost of online learning in the hot path.

Command (from the repository root):

    .venv/bin/python benchmarks/bench_learning.py [--runs 3] [--batch-size 500]

The script starts a private redis-server on a free loopback port and replays
the committed REES46 sample (11,562 events) ``--runs`` times, each run on fresh
key prefixes, in batches as the hot-path consumer polls them. Each run measures,
in the same process and against the same Redis:

* learning off: the feature store alone (``FeatureStore.apply_batch``), which
  is the hot path without this stage;
* learning on: the feature store followed by ``LearningStage.process`` with
  the default settings (pending labels in Redis, conversion models, the
  affinity model with two sampled negatives per event, metrics, drift);
* the stage's own time per event, which is the per-event cost of learning,
  and the part of it spent in the pending-label script (a Redis round trip
  per partition and batch);
* ``LearningStage.signals`` for 50 candidates, the scorer's cost per event;
* Redis memory per pending example and per remembered event id, from
  ``MEMORY USAGE`` of the stage's keys.

Kafka is not involved: the stage never talks to the broker, so the broker's
pass-through would not bound anything measured here.

It prints a Markdown table of medians over the runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from pydantic import SecretStr

from schemas.events import Event
from services.common.redis_features import FeatureStore
from services.common.settings import RedisSettings
from services.infra import find_free_port, start_redis
from services.learner.evaluation import apply_features
from services.learner.settings import LearnerSettings
from services.learner.stage import LearningStage
from services.replay.datasets import REES46_SAMPLE, rees46

_CANDIDATES = 50


def _batches(events: Sequence[Event], size: int) -> list[Sequence[Event]]:
    return [events[start : start + size] for start in range(0, len(events), size)]


def _run(
    client: redis.Redis,
    url: str,
    events: Sequence[Event],
    batch_size: int,
    folder: Path,
) -> dict[str, float]:
    batches = _batches(events, batch_size)

    # Learning off: features only.
    store = FeatureStore(client, f"off{uuid.uuid4().hex[:8]}")
    store.load_scripts()
    started = time.perf_counter()
    for offset, batch in enumerate(batches):
        apply_features(store, batch, 0, offset * batch_size)
    off_seconds = time.perf_counter() - started

    # Learning on: features, then the stage, timed separately.
    prefix = f"on{uuid.uuid4().hex[:8]}"
    store = FeatureStore(client, prefix)
    store.load_scripts()
    settings = LearnerSettings(
        redis=RedisSettings(url=SecretStr(url), key_prefix=prefix),
        checkpoint_dir=folder / prefix,
        checkpoint_interval_seconds=1e9,
    )
    stage = LearningStage(settings, client)
    label_store = stage._store
    apply_labels = label_store.apply
    label_seconds = 0.0

    def timed_apply(*args: Any, **kwargs: Any) -> Any:
        nonlocal label_seconds
        label_started = time.perf_counter()
        outcome = apply_labels(*args, **kwargs)
        label_seconds += time.perf_counter() - label_started
        return outcome

    label_store.apply = timed_apply  # type: ignore[method-assign]
    stage_seconds = 0.0
    started = time.perf_counter()
    for offset, batch in enumerate(batches):
        applied = apply_features(store, batch, 0, offset * batch_size)
        stage_started = time.perf_counter()
        stage.process(applied)
        stage_seconds += time.perf_counter() - stage_started
    on_seconds = time.perf_counter() - started

    last = applied[-1]
    candidates = [
        (f"candidate{index}", dict(last.item_features)) for index in range(_CANDIDATES)
    ]
    rounds = 200
    started = time.perf_counter()
    for _ in range(rounds):
        stage.signals(last.event.user_id, last.user_features, candidates)
    signals_seconds = (time.perf_counter() - started) / rounds

    pending = sum(stage._store.pending_count(0).values())
    keys = stage._store.keys(0)
    seen_key, pending_keys = keys[0], keys[2:]
    pending_bytes = sum(int(client.memory_usage(key) or 0) for key in pending_keys)
    seen_ids = int(client.zcard(seen_key))
    return {
        "off_events_per_second": len(events) / off_seconds,
        "on_events_per_second": len(events) / on_seconds,
        "stage_us_per_event": stage_seconds / len(events) * 1e6,
        "labels_us_per_event": label_seconds / len(events) * 1e6,
        "signals_us_per_event": signals_seconds * 1e6,
        "pending": float(pending),
        "bytes_per_pending": pending_bytes / max(pending, 1),
        "seen_ids": float(seen_ids),
        "bytes_per_seen_id": int(client.memory_usage(seen_key) or 0) / max(seen_ids, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=3, help="replays to take medians of"
    )
    parser.add_argument(
        "--batch-size", type=int, default=500, help="events per hot-path batch"
    )
    args = parser.parse_args()

    events = rees46.load(REES46_SAMPLE).events
    with tempfile.TemporaryDirectory() as folder:
        server = start_redis(Path(folder), find_free_port())
        try:
            url = f"redis://{server.address}/0"
            client = redis.Redis.from_url(url)
            runs = [
                _run(client, url, events, args.batch_size, Path(folder))
                for _ in range(args.runs)
            ]
            client.close()
        finally:
            server.stop()

    def median(name: str) -> float:
        return statistics.median(run[name] for run in runs)

    rows = [
        (
            "hot path without learning (features only)",
            "events/s",
            "off_events_per_second",
        ),
        (
            "hot path with learning (features + stage)",
            "events/s",
            "on_events_per_second",
        ),
        ("learning stage, per event", "µs", "stage_us_per_event"),
        ("of which the pending-label script in Redis", "µs", "labels_us_per_event"),
        (
            f"signals for {_CANDIDATES} candidates, per event",
            "µs",
            "signals_us_per_event",
        ),
        ("pending examples at the end of a replay", "count", "pending"),
        ("Redis memory per pending example", "bytes", "bytes_per_pending"),
        ("applied event ids remembered at the end", "count", "seen_ids"),
        ("Redis memory per remembered event id", "bytes", "bytes_per_seen_id"),
    ]
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"{len(events)} events per run, {args.runs} runs, "
        f"batch size {args.batch_size}, {os.cpu_count()} CPUs, "
        f"load average after the runs {load}"
    )
    print()
    print("| measure | unit | median |")
    print("|---|---|---|")
    for label, unit, name in rows:
        print(f"| {label} | {unit} | {median(name):,.0f} |")


if __name__ == "__main__":
    main()
