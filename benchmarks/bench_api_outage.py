"""Benchmark the HTTP API's slate reads while event posts wait out a broker outage.

Command::

    .venv/bin/python benchmarks/bench_api_outage.py --posts 100 --reads 20

It starts its own Tansu broker and redis-server on free loopback ports and
runs the API (``python -m services.api``) as a separate process, as
deployed. One event is posted while the broker is up, so the API has seen
the events topic. Then the broker is killed with SIGKILL, ``--posts``
event posts are sent at once, and after half a second ``--reads`` slate
reads are sent one after another on a separate connection. It prints the
read latencies (median and maximum), the status codes of the posts, when
the last post got its response and how many librdkafka lines the API logged in
the ``--log-seconds`` after the broker died.

A read should not wait for the posts: the posts need the broker, the reads
need only Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from schemas.events import Event, EventType
from services.common.kafka import TopicSpec, create_topics
from services.common.parent_death import signal_on_parent_death
from services.common.settings import KafkaSettings, TopicSettings, child_environment
from services.infra import find_free_port, start_broker, start_redis


def _event(index: int) -> str:
    return Event(
        event_id=f"outage-{index}",
        event_type=EventType.CLICK,
        user_id="u1",
        item_id="i1",
        event_time=datetime.now(UTC),
    ).model_dump_json()


def _count_librdkafka_lines(path: Path) -> int:
    # Both librdkafka's own format and the Python logger's name the client.
    with path.open("rb") as log:
        return sum(1 for line in log if b"rdkafka#" in line)


def _wait_until_live(base_url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120.0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the API exited with status {process.returncode}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the API did not respond to /healthz within 120 s")


@dataclass(frozen=True)
class OutageResult:
    """The responses the clients received while the broker was down."""

    read_ms: list[float]
    statuses: collections.Counter[int]
    posts_done_seconds: float


async def _outage(base_url: str, posts: int, reads: int) -> OutageResult:
    limits = httpx.Limits(max_connections=posts + 10)
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=120.0, limits=limits) as poster,
        httpx.AsyncClient(base_url=base_url, timeout=120.0) as reader,
    ):
        started = time.perf_counter()
        sent = [
            asyncio.create_task(poster.post("/v1/events", content=_event(index)))
            for index in range(posts)
        ]
        await asyncio.sleep(0.5)
        read_ms = []
        for _ in range(reads):
            before = time.perf_counter()
            await reader.get("/v1/users/u1/slates/products")
            read_ms.append((time.perf_counter() - before) * 1000.0)
        answers = await asyncio.gather(*sent)
        finished = time.perf_counter() - started
    return OutageResult(
        read_ms,
        collections.Counter(answer.status_code for answer in answers),
        finished,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=100, help="concurrent posts")
    parser.add_argument("--reads", type=int, default=20, help="slate reads")
    parser.add_argument(
        "--ingest-timeout",
        type=float,
        default=5.0,
        help="CARTWHEEL_API_INGEST_TIMEOUT_SECONDS",
    )
    parser.add_argument(
        "--log-seconds",
        type=float,
        default=15.0,
        help="how long librdkafka's lines are counted after the broker died",
    )
    args = parser.parse_args()

    state_dir = Path(tempfile.mkdtemp(prefix="bench-api-outage-"))
    broker = start_broker(state_dir, find_free_port())
    redis_server = start_redis(state_dir, find_free_port())
    port = find_free_port()
    base_url = f"http://127.0.0.1:{port}"
    kafka = KafkaSettings(bootstrap=broker.address)
    topics = TopicSettings()
    create_topics(
        kafka,
        [
            TopicSpec(name, topics.partitions)
            for name in (topics.events, topics.dead_letters, topics.models)
        ],
    )
    environment = child_environment(
        {
            "CARTWHEEL_KAFKA_BOOTSTRAP": broker.address,
            "CARTWHEEL_REDIS_URL": f"redis://{redis_server.address}/0",
            "CARTWHEEL_API_PORT": str(port),
            "CARTWHEEL_API_INGEST_TIMEOUT_SECONDS": str(args.ingest_timeout),
            # The API runs the code of the checkout this command runs in.
            "PYTHONPATH": os.pathsep.join(
                filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])
            ),
        }
    )
    log_path = state_dir / "api.log"
    log_file = log_path.open("wb")
    api = subprocess.Popen(
        [sys.executable, "-m", "services.api"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=log_file,
        preexec_fn=signal_on_parent_death(signal.SIGTERM),
    )
    try:
        _wait_until_live(base_url, api)
        first = httpx.post(f"{base_url}/v1/events", content=_event(-1), timeout=30.0)
        if first.status_code != 202:
            raise SystemExit(f"the first event got {first.status_code}: {first.text}")
        pid = broker.pid()
        if pid is None:
            raise SystemExit("the broker is not running")
        lines_before = _count_librdkafka_lines(log_path)
        os.kill(pid, signal.SIGKILL)
        time.sleep(1.0)
        result = asyncio.run(_outage(base_url, args.posts, args.reads))
        time.sleep(max(0.0, args.log_seconds - result.posts_done_seconds - 1.0))
        log_lines = _count_librdkafka_lines(log_path) - lines_before
    finally:
        api.send_signal(signal.SIGINT)
        try:
            api.wait(timeout=30.0)
        except subprocess.TimeoutExpired:
            api.kill()
        log_file.close()
        redis_server.stop()
        broker.stop()

    read_ms = result.read_ms
    statuses = ", ".join(
        f"{code}: {count}" for code, count in sorted(result.statuses.items())
    )
    print("| measurement | value |\n|---|---|")
    print(f"| posts in flight | {args.posts} |")
    print(f"| first slate read | {read_ms[0]:.1f} ms |")
    print(
        f"| slate reads, median / max | {statistics.median(read_ms):.1f} / "
        f"{max(read_ms):.1f} ms |"
    )
    print(f"| post statuses | {statuses} |")
    print(f"| last post answered after | {result.posts_done_seconds:.2f} s |")
    print(
        f"| librdkafka lines in the {args.log_seconds:.0f} s after the broker died "
        f"| {log_lines} |"
    )


if __name__ == "__main__":
    main()
