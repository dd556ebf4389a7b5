"""Kill a demo-like parent with SIGKILL and read how its orphaned service exits.

``cartwheel demo`` starts a Tansu broker, a redis-server and its services,
each tied to it by a parent-death signal. When the demo is killed with
SIGKILL, its services get SIGTERM while its broker and Redis go down at the
same moment. :func:`kill_demo_parent` plays that out for one service. A
parent process starts both servers and the service as the demo does (through
its Supervisor), gives the service work, waits until it has done some, and
prints the pids. A subreaper above it, which inherits the orphaned service,
then kills the parent and both servers with SIGKILL and prints the service's
exit status. Both processes run this module: ``python -m tests.killed_demo``.

Killed at once, the broker may go while the service waits on nothing, so
its stop meets the broker only in its last commit. Killing the broker a
moment before the rest makes the stop come while the service is already
waiting on it, as it often is under the demo's load.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from schemas.recommendations import CandidateSource, Slate, SlateItem, Surface
from services.common.kafka import (
    consumer_config,
    create_topics,
    producer_config,
    standard_topics,
)
from services.common.settings import KafkaSettings, RedisSettings, TopicSettings
from services.demo.supervisor import Supervisor
from services.feedback.reader import outcome_counts
from services.infra import find_free_port, start_broker, start_redis
from services.replay.datasets import COMMITTED_DATA_DIR, load_dataset

__all__ = ["KilledDemo", "kill_demo_parent"]

_ROOT = Path(__file__).resolve().parents[1]
# From <linux/prctl.h>.
_PR_SET_CHILD_SUBREAPER = 36
_READY_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class KilledDemo:
    """What became of a service whose demo-like parent was killed.

    Attributes:
        exit_status: the service's exit status; None when the service did no
            work before the deadline, so the parent was never killed.
        log: the service's log.
    """

    exit_status: int | None
    log: str


def kill_demo_parent(
    service: str,
    folder: Path,
    *,
    broker_lead_seconds: float = 0.0,
    timeout_seconds: float = 300.0,
) -> KilledDemo:
    """Start ``service`` under a demo-like parent, kill the parent, reap the service.

    Args:
        service: ``feedback`` or ``hotpath``.
        folder: where the servers' state and the service's log go.
        broker_lead_seconds: how long before the parent and Redis the broker
            is killed; 0 kills all three at once.
        timeout_seconds: the maximum time the whole run may take.
    """
    command = ["subreaper", service, str(folder), str(broker_lead_seconds)]
    completed = subprocess.run(
        [sys.executable, "-m", "tests.killed_demo", *command],
        cwd=_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        timeout=timeout_seconds,
        check=False,
    )
    log_file = folder / "logs" / f"{service}.log"
    log = log_file.read_text(errors="replace") if log_file.exists() else ""
    status = completed.stdout.strip()
    exit_status = int(status) if completed.returncode == 0 and status else None
    return KilledDemo(exit_status, log)


@dataclass(frozen=True)
class _Demo:
    """The servers of a demo-like parent."""

    kafka: KafkaSettings
    redis: RedisSettings
    topics: TopicSettings


def _count_one_slate(demo: _Demo) -> Callable[[], bool]:
    """Publish one slate and return a check that the feedback worker counted it."""
    slate = Slate(
        recommendation_id=uuid.uuid4().hex,
        surface=Surface.PRODUCTS,
        user_id="user-1",
        trigger_event_id="user-1-e1",
        items=[
            SlateItem(item_id="a", rank=1, score=1.0, source=CandidateSource.TRENDING)
        ],
        model_version="mt-20260105-abc1234",
        generated_at=datetime.now(UTC),
        latency_ms=1.0,
    )
    producer = Producer(producer_config(demo.kafka, linger_ms=1))
    producer.produce(
        demo.topics.recommendations("products"),
        slate.model_dump_json().encode(),
        b"user-1",
    )
    producer.flush(10)
    client = redis.Redis.from_url(demo.redis.url.get_secret_value())
    since = datetime.now(UTC) - timedelta(days=1)
    return lambda: bool(outcome_counts(client, demo.redis.key_prefix, since))


def _commit_sample_events(demo: _Demo) -> Callable[[], bool]:
    """Publish the committed REES46 sample and return a check for a first commit.

    The sample keeps the hot path busy for a while after its first commit,
    so it is killed in the middle of a batch.
    """
    events = load_dataset("rees46", COMMITTED_DATA_DIR).events
    producer = Producer(producer_config(demo.kafka))
    for event in events:
        producer.produce(
            demo.topics.events,
            event.model_dump_json().encode(),
            event.user_id.encode(),
        )
        producer.poll(0)
    producer.flush(30)
    probe = Consumer(consumer_config(demo.kafka, "cartwheel-hotpath"))
    partitions = [
        TopicPartition(demo.topics.events, partition)
        for partition in range(demo.topics.partitions)
    ]
    return lambda: any(
        partition.offset > 0 for partition in probe.committed(partitions, timeout=10)
    )


# Per service: give it work, and return a check that it has done some.
_WORK: dict[str, Callable[[_Demo], Callable[[], bool]]] = {
    "feedback": _count_one_slate,
    "hotpath": _commit_sample_events,
}


def _parent(service: str, folder: Path) -> int:
    """Start a broker, Redis and ``service`` as the demo does, and print the pids."""
    broker = start_broker(folder / "infra", find_free_port())
    redis_server = start_redis(folder / "infra", find_free_port())
    demo = _Demo(
        KafkaSettings(bootstrap=broker.address),
        RedisSettings(url=f"redis://{redis_server.address}/0"),
        TopicSettings(),
    )
    create_topics(demo.kafka, standard_topics(demo.topics))

    supervisor = Supervisor(
        folder / "logs",
        {
            "CARTWHEEL_KAFKA_BOOTSTRAP": demo.kafka.bootstrap,
            "CARTWHEEL_REDIS_URL": demo.redis.url.get_secret_value(),
            "CARTWHEEL_FEEDBACK_METRICS_PORT": "0",
            "CARTWHEEL_FEEDBACK_DATA_DIR": str(folder / "feedback"),
            "CARTWHEEL_HOTPATH_METRICS_PORT": "0",
            "CARTWHEEL_LEARNER_CHECKPOINT_DIR": str(folder / "learner"),
        },
    )
    process = supervisor.start(service, f"services.{service}").process
    assert process is not None

    has_worked = _WORK[service](demo)
    deadline = time.monotonic() + _READY_TIMEOUT_SECONDS
    while not has_worked():
        if time.monotonic() > deadline or process.poll() is not None:
            return 1
        time.sleep(0.1)
    print(process.pid, broker.pid(), redis_server.pid(), flush=True)
    time.sleep(600)
    return 1


def _subreaper(service: str, folder: Path, broker_lead_seconds: float) -> int:
    """Run the parent, and kill it and its servers once its service has worked."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    parent = subprocess.Popen(
        [sys.executable, "-m", "tests.killed_demo", "parent", service, str(folder)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    pids = [int(pid) for pid in parent.stdout.readline().split()]
    if not pids:
        parent.wait()
        return 1
    service_pid, broker_pid, redis_pid = pids
    # Each server would stop on its own parent-death signal. Killed here, it
    # is gone before the service closes its clients.
    os.kill(broker_pid, signal.SIGKILL)
    time.sleep(broker_lead_seconds)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    os.kill(redis_pid, signal.SIGKILL)
    _, status = os.waitpid(service_pid, 0)
    os.waitpid(broker_pid, 0)
    os.waitpid(redis_pid, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "subreaper":
        sys.exit(_subreaper(sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])))
    sys.exit(_parent(sys.argv[2], Path(sys.argv[3])))
