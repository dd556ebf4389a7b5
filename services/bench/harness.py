"""Private servers and the hot-path processes under test, shared by the benchmarks.

:class:`Bench` starts a Tansu broker and a redis-server on free loopback ports.
It runs the hot-path consumer (features, learning and scoring stages, as
deployed) in spawned processes, one per instance of one consumer group, so
the load generator and the slate reader do not share their interpreters.
``benchmarks/bench_hotpath.py`` and ``cartwheel bench`` both use it.
"""

from __future__ import annotations

import cProfile
import faulthandler
import multiprocessing
import queue
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from confluent_kafka import Consumer, Producer
from pydantic import SecretStr

from schemas.events import Event
from schemas.training import TrainingExample
from services.common.errors import CartwheelError
from services.common.kafka import (
    consumer_config,
    create_topics,
    producer_config,
    standard_topics,
)
from services.common.lifecycle import tune_garbage_collection
from services.common.parent_death import start_tied_process
from services.common.settings import (
    KafkaSettings,
    RedisSettings,
    TopicSettings,
    load_settings,
)
from services.infra import LocalServer, find_free_ports, start_broker, start_redis

if TYPE_CHECKING:
    from services.hotpath.settings import HotPathSettings
    from services.learner.settings import LearnerSettings
    from services.scorer.settings import ScorerSettings

__all__ = [
    "PARTITIONS",
    "Bench",
    "BenchProcessError",
    "FixedModel",
    "HotPathHandle",
    "HotPathJob",
    "measure_pass_through",
    "run_hotpath",
    "settle_group",
    "histogram_count",
    "histogram_sum",
    "train_ranker",
]

PARTITIONS = 6

# How long the bench waits for each hot-path process's report after the stop,
# and when a process still running writes its threads' stacks.
_REPORT_TIMEOUT_SECONDS = 120.0
_STACKS_AFTER_STOP_SECONDS = 60.0

# A group join on Tansu took half the session timeout, rounded up to whole
# seconds, in measurements (2 s at the 3 s used here), and a member that joins
# late makes every member rejoin. This wait, an estimate, covers two joins.
GROUP_SETTLE_SECONDS = 6.0


@dataclass(frozen=True)
class HotPathJob:
    """Settings of the hot-path process, as plain values so that they can be pickled."""

    bootstrap: str
    redis_url: str
    key_prefix: str
    topics: dict[str, Any]
    group_id: str
    batch_size: int
    poll_timeout_seconds: float
    checkpoint_dir: str
    artifact_dir: str | None
    profile_path: str | None = None
    max_candidates: int | None = None


@dataclass(frozen=True)
class HotPathJobSettings:
    """The settings a hot-path process builds from its job and the environment."""

    learner: LearnerSettings
    scorer: ScorerSettings
    hotpath: HotPathSettings


def load_job_settings(job: HotPathJob) -> HotPathJobSettings:
    """Read a hot-path process's settings from its job and the environment.

    Raises:
        InvalidSettingsError: a ``CARTWHEEL_*`` variable that the process
            reads is invalid.
    """
    # Imported on first use because the packages of these modules import
    # torch and River.
    from services.hotpath.settings import HotPathSettings
    from services.learner.settings import LearnerSettings
    from services.scorer.settings import CandidateSettings, ScorerSettings

    kafka = load_settings(KafkaSettings, bootstrap=job.bootstrap)
    redis_settings = load_settings(
        RedisSettings, url=SecretStr(job.redis_url), key_prefix=job.key_prefix
    )
    topics = load_settings(TopicSettings, **job.topics)
    # A plain model: it reads no variable, so it is built directly.
    candidates = (
        CandidateSettings()
        if job.max_candidates is None
        else CandidateSettings(max_candidates=job.max_candidates)
    )
    return HotPathJobSettings(
        learner=load_settings(
            LearnerSettings,
            redis=redis_settings,
            checkpoint_dir=Path(job.checkpoint_dir),
        ),
        scorer=load_settings(
            ScorerSettings,
            kafka=kafka,
            redis=redis_settings,
            topics=topics,
            candidates=candidates,
        ),
        hotpath=load_settings(
            HotPathSettings,
            kafka=kafka,
            redis=redis_settings,
            topics=topics,
            batch_size=job.batch_size,
            poll_timeout_seconds=job.poll_timeout_seconds,
            metrics_port=0,
        ),
    )


def run_hotpath(job: HotPathJob, stop: Any, results: Any) -> None:
    """Run the hot path until ``stop`` is set, then report its stage costs.

    Ctrl-C and a SIGTERM sent to the process group reach this process too.
    The parent handles both and sets ``stop``, so this process ignores them
    and finishes its batch. If it died instead, the parent would wait on
    ``stop`` forever.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import torch

    from models.multitask.ranker import Ranker
    from models.registry import load_artifact
    from services.common.redis_features import FeatureStore
    from services.hotpath import metrics as hotpath_metrics
    from services.hotpath.consumer import HotPathConsumer
    from services.learner.stage import LearningStage
    from services.scorer import metrics as scorer_metrics
    from services.scorer.stage import build_scoring_stage

    # Broker, Redis and the load generator share the cores.
    torch.set_num_threads(1)
    job_settings = load_job_settings(job)
    settings = job_settings.hotpath
    kafka = settings.kafka
    client = redis.Redis.from_url(job.redis_url)
    producer = Producer(producer_config(kafka, linger_ms=2))
    store = FeatureStore(client, job.key_prefix)
    learning = LearningStage(job_settings.learner, client)
    models = None
    if job.artifact_dir is not None:
        models = FixedModel(Ranker.from_artifact(load_artifact(Path(job.artifact_dir))))
    scoring = build_scoring_stage(
        job_settings.scorer,
        client,
        producer,
        models=models,
        signals=learning,
        features=store,
    )
    consumer = Consumer(
        consumer_config(kafka, job.group_id, fetch_wait_ms=settings.fetch_wait_ms)
    )
    hotpath = HotPathConsumer(settings, consumer, producer, store, [learning, scoring])

    def stop_on_request() -> None:
        stop.wait()
        hotpath.stop()
        # A process still running well after the stop writes every thread's
        # stack to stderr, which shows where it waits.
        faulthandler.dump_traceback_later(_STACKS_AFTER_STOP_SECONDS, exit=False)

    threading.Thread(target=stop_on_request, daemon=True).start()
    tune_garbage_collection(settings.gc_threshold)
    if job.profile_path is None:
        hotpath.run()
    else:
        profiler = cProfile.Profile()
        profiler.runcall(hotpath.run)
        profiler.dump_stats(job.profile_path)

    stage_seconds = {
        stage: histogram_sum(hotpath_metrics.STAGE_SECONDS, {"stage": stage})
        for stage in ("learning", "scoring")
    }
    stage_seconds["features"] = histogram_sum(hotpath_metrics.REDIS_APPLY_SECONDS, {})
    faulthandler.cancel_dump_traceback_later()
    results.put(
        {
            "stage_seconds": stage_seconds,
            "candidates": histogram_sum(scorer_metrics.CANDIDATES_PER_EVENT, {}),
            "scored": histogram_count(scorer_metrics.CANDIDATES_PER_EVENT),
        }
    )


class FixedModel:
    """A model source that always returns the same ranker."""

    def __init__(self, ranker: Any) -> None:
        self._ranker = ranker

    def current(self) -> Any:
        """Return the ranker."""
        return self._ranker


def histogram_sum(histogram: Any, labels: dict[str, str]) -> float:
    """Return the sum of a Prometheus histogram's series with ``labels``, or 0."""
    for metric in histogram.collect():
        for sample in metric.samples:
            if sample.name.endswith("_sum") and all(
                sample.labels.get(key) == value for key, value in labels.items()
            ):
                return float(sample.value)
    return 0.0


def histogram_count(histogram: Any) -> float:
    """Return the observation count of an unlabelled Prometheus histogram, or 0."""
    for metric in histogram.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return float(sample.value)
    return 0.0


class BenchProcessError(CartwheelError):
    """A hot-path process of the bench did not finish as it should."""


@dataclass(frozen=True)
class HotPathHandle:
    """Running hot-path processes of one consumer group, their stop flag and results."""

    processes: tuple[Any, ...]
    stop: Any
    results: Any

    def is_alive(self) -> bool:
        """Return whether every hot-path process is still running."""
        return all(process.is_alive() for process in self.processes)


class Bench:
    """One broker, one Redis and the hot-path process under test.

    Args:
        state_dir: folder for the servers' files, checkpoints and models.
        batch_size: the hot path's batch size.
        poll_timeout: seconds the hot path waits for the first message of a batch.
        profile_path: where :meth:`start` with ``profile=True`` writes a
            cProfile dump.
        max_candidates: the scorer's candidates kept for ranking per event;
            None keeps the scorer's default.
    """

    def __init__(
        self,
        state_dir: Path,
        batch_size: int,
        poll_timeout: float,
        profile_path: str | None = None,
        max_candidates: int | None = None,
    ) -> None:
        self.state_dir = state_dir
        broker_port, redis_port = find_free_ports(2)
        self.kafka = load_settings(
            KafkaSettings, bootstrap=LocalServer.tansu(state_dir, broker_port).address
        )
        self.redis_url = f"redis://{LocalServer.redis(state_dir, redis_port).address}/0"
        self.key_prefix = f"bench{uuid.uuid4().hex[:6]}"
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.profile_path = profile_path
        self.max_candidates = max_candidates
        self.context = multiprocessing.get_context("spawn")
        # The hot-path processes read the rest of their settings from the
        # environment, so an invalid variable is reported before the servers
        # start instead of as a traceback in a child process.
        load_job_settings(self._job(self._topic_settings("check"), "check", None))

        self.broker = start_broker(state_dir, broker_port)
        try:
            self.redis_server = start_redis(state_dir, redis_port)
        except BaseException:
            self.broker.stop()
            raise

    def close(self) -> None:
        """Stop the broker and the redis-server."""
        try:
            self.redis_server.stop()
        finally:
            self.broker.stop()

    def topics(self) -> TopicSettings:
        """Create a fresh set of topics and return their names."""
        topics = self._topic_settings(uuid.uuid4().hex[:8])
        create_topics(self.kafka, standard_topics(topics))
        return topics

    def _topic_settings(self, stem: str) -> TopicSettings:
        return load_settings(
            TopicSettings,
            events=f"events-{stem}",
            dead_letters=f"dlq-{stem}",
            catalog=f"catalog-{stem}",
            recommendations_prefix=f"recommendations-{stem}",
            training_examples=f"examples-{stem}",
            models=f"models-{stem}",
            partitions=PARTITIONS,
        )

    def start(
        self,
        topics: TopicSettings,
        artifact_dir: str | None,
        profile: bool = False,
        instances: int = 1,
    ) -> HotPathHandle:
        """Start ``instances`` hot-path processes in one consumer group on ``topics``.

        The processes end when the thread that called this exits, even when
        this process is killed with SIGKILL, on Linux. Call it from the main
        thread then.

        Args:
            topics: the run's topics.
            artifact_dir: the ranker's artifact; None ranks with the heuristic.
            profile: write a cProfile dump of the first instance.
            instances: the number of processes; the topic's partitions are
                shared among them.
        """
        group_id = f"hotpath-{uuid.uuid4().hex[:8]}"
        stop = self.context.Event()
        results = self.context.Queue()
        processes = []
        for instance in range(instances):
            job = self._job(
                topics,
                group_id,
                artifact_dir,
                self.profile_path if profile and instance == 0 else None,
            )
            # The process ignores SIGTERM and SIGINT (see run_hotpath), and
            # once this process has died no process reads its report, so
            # SIGKILL ends it then.
            # LIMITATION(L-3): only Linux ends it when this process is killed.
            process = start_tied_process(
                self.context, run_hotpath, (job, stop, results), signal.SIGKILL
            )
            processes.append(process)
        return HotPathHandle(tuple(processes), stop, results)

    def _job(
        self,
        topics: TopicSettings,
        group_id: str,
        artifact_dir: str | None,
        profile_path: str | None = None,
    ) -> HotPathJob:
        return HotPathJob(
            bootstrap=self.kafka.bootstrap,
            redis_url=self.redis_url,
            key_prefix=self.key_prefix,
            topics=topics.model_dump(),
            group_id=group_id,
            batch_size=self.batch_size,
            poll_timeout_seconds=self.poll_timeout,
            # A fresh checkpoint folder per process and run keeps them
            # independent.
            checkpoint_dir=str(self.state_dir / f"checkpoints-{uuid.uuid4().hex[:6]}"),
            artifact_dir=artifact_dir,
            profile_path=profile_path,
            max_candidates=self.max_candidates,
        )

    def finish(self, handle: HotPathHandle) -> dict[str, Any]:
        """Stop the hot-path processes and return their stage costs, summed.

        ``candidates`` in the result is the mean number of candidates scored
        per event over every process.
        """
        handle.stop.set()
        reports = []
        for _ in handle.processes:
            try:
                reports.append(handle.results.get(timeout=_REPORT_TIMEOUT_SECONDS))
            except queue.Empty:
                running = [p.pid for p in handle.processes if p.is_alive()]
                self.kill(handle, timeout_seconds=0)
                raise BenchProcessError(
                    f"{len(handle.processes) - len(reports)} of "
                    f"{len(handle.processes)} hot-path processes sent no report "
                    f"within {_REPORT_TIMEOUT_SECONDS:.0f} s of the stop (still "
                    f"running: pids {running}); stacks of a process that was still "
                    f"running {_STACKS_AFTER_STOP_SECONDS:.0f} s after the stop "
                    "are above"
                ) from None
        for process in handle.processes:
            process.join(60)
        stage_seconds: dict[str, float] = {}
        for report in reports:
            for stage, seconds in report["stage_seconds"].items():
                stage_seconds[stage] = stage_seconds.get(stage, 0.0) + seconds
        scored = sum(report["scored"] for report in reports)
        candidates = sum(report["candidates"] for report in reports)
        return {
            "stage_seconds": stage_seconds,
            "candidates": candidates / max(scored, 1),
        }

    def kill(self, handle: HotPathHandle, timeout_seconds: float = 15.0) -> None:
        """Stop the hot-path processes without waiting for their reports."""
        handle.stop.set()
        for process in handle.processes:
            process.join(timeout_seconds)
            if process.is_alive():
                process.terminate()
                process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)

    def cpu_groups(self, handle: HotPathHandle) -> dict[str, list[int]]:
        """Return the process ids of each part of the run, for :class:`CpuAccount`.

        The id ``0`` is this process: the load generator and the slate reader.
        """
        groups = {"hot path": [process.pid for process in handle.processes]}
        servers = (("redis-server", self.redis_server), ("broker", self.broker))
        for name, server in servers:
            pid = server.pid()
            if pid is None:
                raise BenchProcessError(f"{name} has no pid file; did it stop?")
            groups[name] = [pid]
        groups["benchmark"] = [0]
        return groups

    def publish(self, topics: TopicSettings, events: list[Event]) -> None:
        """Produce ``events`` to the events topic, keyed by user, and wait for acks."""
        producer = Producer(producer_config(self.kafka))
        for event in events:
            producer.produce(
                topics.events, key=event.user_id.encode(), value=event.model_dump_json()
            )
            producer.poll(0)
        if producer.flush(60):
            raise RuntimeError("the broker did not acknowledge every event")


def train_ranker(bench: Bench, topics: TopicSettings, count: int) -> str:
    """Train the multi-task ranker on up to ``count`` of a run's training examples.

    Returns:
        The artifact folder of the trained ranker.
    """
    from models.multitask.dataset import build_training_set
    from models.multitask.model import ModelConfig
    from models.multitask.train import TrainConfig, fit_feature_spec, train_new_model
    from models.registry import DataWindow, ModelRegistry

    consumer = Consumer(
        consumer_config(bench.kafka, f"bench-train-{uuid.uuid4().hex[:6]}")
    )
    consumer.subscribe([topics.training_examples])
    examples: list[TrainingExample] = []
    deadline = time.monotonic() + 120
    while len(examples) < count and time.monotonic() < deadline:
        for message in consumer.consume(5000, 0.2):
            if message.error() is None:
                examples.append(
                    TrainingExample.model_validate_json(message.value() or b"")
                )
    consumer.close()
    dataset = build_training_set(examples)
    spec = fit_feature_spec(dataset)
    model, _ = train_new_model(spec, ModelConfig(), dataset, TrainConfig(epochs=1))
    registry = ModelRegistry(bench.state_dir / "registry")
    times = sorted(example.event_time for example in examples)
    metadata = registry.save(
        "ranker",
        model,
        spec,
        DataWindow(
            start=times[0],
            end=times[-1],
            examples=len(examples),
            rows=len(dataset.labels),
        ),
        {},
    )
    return str(registry.path_of(metadata.model_version))


def settle_group(instances: int) -> None:
    """Give a group of ``instances`` hot-path processes time to finish forming.

    Called once the first slate has arrived. With one process the group has
    formed by then. With more, a member may still be joining, and the
    rebalance it causes would otherwise land in the measurement.
    """
    # NOTE: a fixed wait, not a check that every process has partitions, so
    # a process that starts more than a few seconds late still rebalances
    # inside the measurement.
    if instances > 1:
        time.sleep(GROUP_SETTLE_SECONDS)


def measure_pass_through(bench: Bench, count: int, size: int) -> float:
    """Return messages per second of a bare consume-and-produce loop."""
    source, sink = bench.topics(), bench.topics()
    producer = Producer(producer_config(bench.kafka))
    payload = b"x" * size
    for index in range(count):
        producer.produce(source.events, key=str(index % 1000).encode(), value=payload)
        producer.poll(0)
    producer.flush(60)
    consumer = Consumer(
        consumer_config(bench.kafka, f"bench-pass-{uuid.uuid4().hex[:6]}")
    )
    consumer.subscribe([source.events])
    moved = 0
    started = None
    while moved < count:
        for message in consumer.consume(1000, 0.2):
            if message.error() is not None:
                continue
            started = started or time.perf_counter()
            producer.produce(sink.events, key=message.key(), value=message.value())
            moved += 1
        producer.poll(0)
    producer.flush(60)
    consumer.close()
    return count / (time.perf_counter() - (started or time.perf_counter()))
