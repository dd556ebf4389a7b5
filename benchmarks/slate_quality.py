"""Score the products slates of a real sample offline, beside the baselines.

Command (from the repository root):

    .venv/bin/python benchmarks/slate_quality.py
        DATASET [--limit N] [--batch-size N] [--cutoff 20]

The sample is read from where ``cartwheel replay`` reads it: the committed
sample for rees46, and ``CARTWHEEL_REPLAY_DATA_DIR`` (by default a
``shared/data`` folder beside the checkout) for the others.

The script starts a private redis-server on a free loopback port. It writes
the sample's catalog with the promotions and reviews that ``cartwheel demo``
generates. Then it runs the hot path's features, online-learning and
scoring stages in this process on the sample's events, in event-time order.
They go in batches of ``--batch-size`` events (``CARTWHEEL_HOTPATH_BATCH_SIZE``
without it), each cut into waves with no user twice, as the hot path cuts
them. Slates are kept in memory. The evaluation that ``cartwheel demo``
runs then scores them beside its baselines, from the same point (after the
first 30 % of the events) and with the same settings, at the list length
``--cutoff`` (1 to 200, as the evaluation accepts).

The ``CARTWHEEL_SCORER_*``, ``CARTWHEEL_HOTPATH_*`` (the feature store's),
``CARTWHEEL_LEARNER_*`` and ``CARTWHEEL_EVALUATION_*`` variables apply, so
one candidate weight or ranking setting can be compared on every sample in
minutes, without a broker, a trainer or the timing of a live run. They are
read as the services read them, before the sample is loaded: an invalid
one stops the script with its name, value and expected form (exit status
2), and one that names no setting is logged as a warning. The script
replaces the item cache's lifetime (0), the evaluation's start and its list
length (``--cutoff``), and it reads no Kafka, Redis or topic variable. The
slates come from the heuristic ranker and the online-learning stage's
signals, as in the hot path, but no multi-task model is trained. A demo's
slates, whose cart and purchase probabilities blend the first model in,
differ slightly from these. With no item cache, two runs of one commit and
one setting give the same numbers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis
from pydantic import SecretStr

from schemas.events import Event
from schemas.recommendations import Slate
from services.bench.offline import (
    MemoryProducer,
    SettingsLoader,
    add_sample_arguments,
    apply_wave,
    count_argument,
    load_sample,
)
from services.common.logging import configure_logging
from services.common.redis_features import FeatureStore
from services.common.settings import CommandLineValue, RedisSettings
from services.evaluation.prequential import CatalogInput, evaluate_streams
from services.evaluation.report import summary_lines
from services.evaluation.settings import EvaluationSettings
from services.features.catalog import CatalogWriter
from services.hotpath.settings import HotPathSettings
from services.infra import find_free_port, start_redis
from services.learner.settings import LearnerSettings
from services.learner.stage import LearningStage
from services.replay.generated import generate_catalog
from services.replay.settings import Settings as ReplaySettings
from services.scorer.settings import ScorerSettings
from services.scorer.stage import build_scoring_stage

_WARMUP_FRACTION = 0.3


def waves(events: Sequence[Event], batch_size: int) -> Iterator[list[Event]]:
    """Yield batches of ``batch_size`` events, each cut where a user repeats."""
    for start in range(0, len(events), batch_size):
        wave: list[Event] = []
        users: set[str] = set()
        for event in events[start : start + batch_size]:
            if event.user_id in users:
                yield wave
                wave, users = [], set()
            wave.append(event)
            users.add(event.user_id)
        if wave:
            yield wave


@dataclass(frozen=True)
class QualitySettings:
    """The settings of the stages and of the evaluation, read before any work."""

    replay: ReplaySettings
    hotpath: HotPathSettings
    learner: LearnerSettings
    scorer: ScorerSettings
    evaluation: EvaluationSettings


def load_quality_settings(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> QualitySettings:
    """Read the settings as the services read them, or exit with every invalid one."""
    loader = SettingsLoader()
    # --batch-size replaces the variable, and is checked against its range.
    batch_size = (
        {}
        if args.batch_size is None
        else {"batch_size": CommandLineValue("--batch-size", args.batch_size)}
    )
    settings = QualitySettings(
        replay=loader.load(ReplaySettings),
        hotpath=loader.load(HotPathSettings, **batch_size),
        learner=loader.load(LearnerSettings),
        # No item cache: cached vectors depend on wall time, and the numbers
        # must not.
        scorer=loader.load(ScorerSettings, item_cache_ttl_seconds=0.0),
        # The scored events start at a share of the sample, once it is loaded.
        evaluation=loader.load(
            EvaluationSettings,
            score_from=None,
            cutoffs=CommandLineValue("--cutoff", (args.cutoff,)),
        ),
    )
    loader.exit_if_invalid(parser)
    return settings


def run_stages(
    events: Sequence[Event],
    catalog: Sequence[CatalogInput],
    settings: QualitySettings,
    state_dir: Path,
    progress: Callable[[int], None],
) -> list[Slate]:
    """Run features, learning and scoring on ``events`` and return the slates.

    The events go in batches of the hot path's batch size, each cut into
    waves as the hot path cuts them.
    """
    server = start_redis(state_dir, find_free_port())
    try:
        url = f"redis://{server.address}/0"
        client = redis.Redis.from_url(url)
        prefix = f"quality{uuid.uuid4().hex[:6]}"
        writer = CatalogWriter(client, prefix)
        for record in catalog:
            writer.write(record)
        redis_settings = RedisSettings(url=SecretStr(url), key_prefix=prefix)
        store = FeatureStore(client, prefix, settings.hotpath.feature_config())
        learner = settings.learner.model_copy(
            update={"redis": redis_settings, "checkpoint_dir": state_dir / "ck"}
        )
        learning = LearningStage(learner, client)
        producer = MemoryProducer()
        scoring = build_scoring_stage(
            settings.scorer.model_copy(update={"redis": redis_settings}),
            client,
            producer,  # type: ignore[arg-type]
            signals=learning,
            features=store,
        )
        offset = 0
        for wave in waves(events, settings.hotpath.batch_size):
            applied = apply_wave(store, wave, offset)
            offset += len(wave)
            learning.process(applied)
            scoring.process(applied)
            progress(offset)
        return [Slate.model_validate_json(value) for value in producer.values]
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sample_arguments(parser)
    parser.add_argument(
        "--batch-size",
        type=count_argument(1),
        help="events per batch, in place of CARTWHEEL_HOTPATH_BATCH_SIZE "
        "(default: that variable, 500 unless set)",
    )
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    settings = load_quality_settings(parser, args)

    dataset, events = load_sample(parser, args, settings.replay)
    generated = generate_catalog(dataset.events, dataset.items, seed=46)
    catalog: list[CatalogInput] = [
        *dataset.items,
        *generated.promotions,
        *generated.reviews,
    ]

    started = time.monotonic()
    last_shown = [started]

    def progress(done: int) -> None:
        now = time.monotonic()
        if now - last_shown[0] >= 10.0 or done == len(events):
            last_shown[0] = now
            print(f"  {done}/{len(events)} events", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="cartwheel-quality-") as folder:
        slates = run_stages(events, catalog, settings, Path(folder), progress)
    seconds = time.monotonic() - started

    split = max(1, int(len(events) * _WARMUP_FRACTION))
    evaluation = settings.evaluation.model_copy(
        update={"score_from": events[split].event_time}
    )
    result = evaluate_streams(events, slates, catalog, settings=evaluation)
    print(
        f"{args.dataset}: {len(events)} events, "
        f"batches of {settings.hotpath.batch_size}, "
        f"{len(slates)} slates in {seconds:.0f} s"
    )
    for line in summary_lines(result):
        if not line.startswith(("latency", "throughput")):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
