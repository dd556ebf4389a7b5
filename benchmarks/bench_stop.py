"""Measure how long the hot path takes to stop while its broker is frozen or gone.

Command::

    .venv/bin/python benchmarks/bench_stop.py --broker frozen --repeats 3

It starts its own Tansu broker and redis-server on free loopback ports, runs
the hot path (``python -m services.hotpath``, every stage) as a separate
process, publishes the committed REES46 sample and waits for the first
commit. Then it freezes the broker with SIGSTOP (``--broker frozen``) or kills
it with SIGKILL (``--broker killed``), waits ``--outage-seconds``, sends the
hot path SIGTERM and reports the seconds until the process exits and its
exit status. Kubernetes and compose allow a service 30 s to stop before
they kill it.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from services.common.kafka import (
    consumer_config,
    create_topics,
    producer_config,
    standard_topics,
)
from services.common.settings import KafkaSettings, TopicSettings
from services.demo.supervisor import Supervisor
from services.infra import find_free_port, start_broker, start_redis
from services.replay.datasets import COMMITTED_DATA_DIR, load_dataset

_COMMIT_TIMEOUT_SECONDS = 300.0
_EXIT_TIMEOUT_SECONDS = 120.0


def measure_stop(
    folder: Path, broker_fault: str, outage_seconds: float
) -> tuple[float, int]:
    """Return the seconds from SIGTERM to the hot path's exit, and its status."""
    broker = start_broker(folder / "infra", find_free_port())
    redis_server = start_redis(folder / "infra", find_free_port())
    try:
        kafka = KafkaSettings(bootstrap=broker.address)
        topics = TopicSettings()
        create_topics(kafka, standard_topics(topics))
        supervisor = Supervisor(
            folder / "logs",
            {
                "CARTWHEEL_KAFKA_BOOTSTRAP": kafka.bootstrap,
                "CARTWHEEL_REDIS_URL": f"redis://{redis_server.address}/0",
                "CARTWHEEL_HOTPATH_METRICS_PORT": "0",
                "CARTWHEEL_LEARNER_CHECKPOINT_DIR": str(folder / "learner"),
            },
        )
        service = supervisor.start("hotpath", "services.hotpath")
        producer = Producer(producer_config(kafka, linger_ms=1))
        for event in load_dataset("rees46", COMMITTED_DATA_DIR).events:
            producer.produce(
                topics.events, event.model_dump_json().encode(), event.user_id.encode()
            )
        producer.flush(30)
        _wait_for_first_commit(kafka, topics)
        broker_pid, process = broker.pid(), service.process
        if broker_pid is None or process is None:
            raise SystemExit("the broker or the hot path is not running")
        fault = signal.SIGSTOP if broker_fault == "frozen" else signal.SIGKILL
        os.kill(broker_pid, fault)
        time.sleep(outage_seconds)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        status = process.wait(_EXIT_TIMEOUT_SECONDS)
        elapsed = time.monotonic() - started
        if broker_fault == "frozen":
            os.kill(broker_pid, signal.SIGCONT)
        return elapsed, status
    finally:
        redis_server.stop()
        broker.stop()


def _wait_for_first_commit(kafka: KafkaSettings, topics: TopicSettings) -> None:
    probe = Consumer(consumer_config(kafka, "cartwheel-hotpath"))
    partitions = [
        TopicPartition(topics.events, partition)
        for partition in range(topics.partitions)
    ]
    deadline = time.monotonic() + _COMMIT_TIMEOUT_SECONDS
    try:
        while True:
            committed = probe.committed(partitions, timeout=10)
            if sum(max(tp.offset, 0) for tp in committed) > 0:
                return
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"the hot path committed nothing in {_COMMIT_TIMEOUT_SECONDS:.0f} s"
                )
            time.sleep(0.2)
    finally:
        probe.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--broker",
        choices=("frozen", "killed"),
        default="frozen",
        help="what happens to the broker before the stop (default: frozen)",
    )
    parser.add_argument(
        "--outage-seconds",
        type=float,
        default=3.0,
        help="seconds between the broker fault and SIGTERM (default: 3)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs (default: 3)")
    args = parser.parse_args()
    results = []
    for repeat in range(args.repeats):
        folder = Path(tempfile.mkdtemp(prefix=f"bench-stop-{repeat}-"))
        elapsed, status = measure_stop(folder, args.broker, args.outage_seconds)
        results.append(elapsed)
        # One line per run is the script's output.
        print(f"run {repeat + 1}: exit status {status} after {elapsed:.1f} s")  # noqa: T201
    print(  # noqa: T201
        f"broker {args.broker}: median {statistics.median(results):.1f} s, "
        f"max {max(results):.1f} s over {len(results)} runs; logs under "
        f"{tempfile.gettempdir()}/bench-stop-*"
    )


if __name__ == "__main__":
    main()
