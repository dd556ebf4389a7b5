"""Measure the ranker: training speed, a full refresh, and inference per batch size.

Command (from the repository root):

    .venv/bin/python benchmarks/bench_ranker.py [--rows 1000000] [--runs 3]

The data is generated (``models.multitask.synthetic``) because the real samples
hold about 12,000 events. The script measures, with the trainer's default
network and optimiser settings and ``--threads`` PyTorch threads:

* training rows: ``build_training_set`` on ``rows / 5`` events (one positive
  and four sampled negatives each), in events/s and rows/s;
* training speed: one ``train_model`` epoch, in rows/s;
* a full refresh on about ``--rows`` training rows: ``Trainer.refresh`` from
  the window snapshot to a saved, promoted artifact, with a champion present
  so that both models are evaluated on the held-out slice, split by phase.
  The gate is opened for this step (no AUC floor, any loss tolerated) so
  that every run also saves and promotes;
* inference: ``Ranker.predict`` for one event with C = 50, 100 and 200
  candidates, and ``Ranker.predict_many`` for 16 events at once, in
  candidates/s.

It prints Markdown tables of medians over ``--runs`` runs (refresh: one run
per ``--runs`` too).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from models.multitask.dataset import build_training_set
from models.multitask.model import build_model
from models.multitask.ranker import CandidateInput, Ranker, RankRequest
from models.multitask.synthetic import generate_examples
from models.multitask.train import fit_feature_spec, train_model, train_new_model
from models.registry import ModelRegistry
from services.trainer.settings import TrainerSettings
from services.trainer.trainer import Trainer

ROWS_PER_EVENT = 5


def _median_seconds(action: Callable[[], object], runs: int) -> float:
    durations = []
    for _ in range(runs):
        gc.collect()
        started = time.perf_counter()
        action()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations)


def bench_training(events: int, settings: TrainerSettings, runs: int) -> list[str]:
    """Rows built per second and training rows per second for one epoch."""
    examples = generate_examples(
        events, user_count=max(events // 20, 100), item_count=max(events // 10, 200)
    )
    build_seconds = _median_seconds(
        lambda: build_training_set(examples, settings.dataset_config()), runs
    )
    rows = build_training_set(examples, settings.dataset_config())
    spec = fit_feature_spec(rows)
    config = settings.train_config()
    one_epoch = type(config)(**{**config.__dict__, "epochs": 1})

    def train_once() -> None:
        torch.manual_seed(0)
        train_model(build_model(spec, settings.network_config()), spec, rows, one_epoch)

    train_seconds = _median_seconds(train_once, runs)
    return [
        "| step | events | rows | median s | events/s | rows/s |",
        "|---|---|---|---|---|---|",
        f"| build training rows | {events:,} | {len(rows):,} | {build_seconds:.2f} | "
        f"{events / build_seconds:,.0f} | {len(rows) / build_seconds:,.0f} |",
        f"| train one epoch | {events:,} | {len(rows):,} | {train_seconds:.2f} | "
        f"{events / train_seconds:,.0f} | {len(rows) / train_seconds:,.0f} |",
    ]


def bench_refresh(target_rows: int, settings: TrainerSettings, runs: int) -> list[str]:
    """Duration of Trainer.refresh on about ``target_rows`` rows, by phase."""
    events = target_rows // ROWS_PER_EVENT
    examples = generate_examples(
        events, user_count=max(events // 20, 100), item_count=max(events // 10, 200)
    )
    lines = [
        "| run | events | rows | build rows s | train s | evaluate + save s | "
        "total s | outcome |",
        "|---|---|---|---|---|---|---|---|",
    ]
    totals = []
    for run in range(1, runs + 1):
        with tempfile.TemporaryDirectory() as registry_dir:
            registry = ModelRegistry(Path(registry_dir))
            # A first refresh on a small slice makes a champion, so the
            # measured refresh evaluates both models as in production.
            # Both refreshes promote whatever they train (no AUC floor, any loss
            # tolerated), so the measured one also saves and promotes.
            always = settings.model_copy(
                update={"min_click_auc": 0.0, "promotion_tolerance": 0.5}
            )
            Trainer(always, registry).refresh(examples[: min(events, 20_000)], "first")
            trainer = Trainer(always, registry)
            gc.collect()
            started = time.perf_counter()
            prepared = trainer.prepare(examples)
            built = time.perf_counter()
            if prepared is None:
                raise RuntimeError(f"{events} events are too few for a refresh")
            challenger = trainer.train_challenger(prepared.train)
            trained = time.perf_counter()
            result = trainer.judge(challenger, prepared)
            finished = time.perf_counter()
        totals.append(finished - started)
        lines.append(
            f"| {run} | {events:,} | {len(prepared.train) + len(prepared.holdout):,} | "
            f"{built - started:.1f} | {trained - built:.1f} | "
            f"{finished - trained:.1f} | {finished - started:.1f} | {result.outcome} |"
        )
    lines.append(f"| median | | | | | | {statistics.median(totals):.1f} | |")
    return lines


def bench_inference(settings: TrainerSettings, calls: int) -> list[str]:
    """Candidates scored per second for one event and for 16 events at once."""
    examples = generate_examples(20_000, user_count=1000, item_count=2000)
    rows = build_training_set(examples, settings.dataset_config())
    spec = fit_feature_spec(rows)
    model, _ = train_new_model(
        spec, settings.network_config(), rows, settings.train_config()
    )
    ranker = Ranker(model, spec, "bench")
    user_features = dict(examples[-1].user_features)
    candidates = [
        CandidateInput(ex.item_id, ex.item_features, ex.category_id, ex.brand, ex.price)
        for ex in examples[-200:]
    ]
    lines = [
        "| call | events | candidates per event | median ms per call | candidates/s |",
        "|---|---|---|---|---|",
    ]
    for count in (50, 100, 200):
        batch = candidates[:count]
        ranker.predict("u1", user_features, batch)
        seconds = _median_seconds(
            lambda batch=batch: ranker.predict("u1", user_features, batch), calls
        )
        lines.append(
            f"| predict | 1 | {count} | {seconds * 1000:.2f} | {count / seconds:,.0f} |"
        )
    for count in (50, 100, 200):
        requests = [
            RankRequest(f"u{n}", user_features, candidates[:count]) for n in range(16)
        ]
        seconds = _median_seconds(
            lambda requests=requests: ranker.predict_many(requests), calls
        )
        lines.append(
            f"| predict_many | 16 | {count} | {seconds * 1000:.2f} | "
            f"{16 * count / seconds:,.0f} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows of the refresh"
    )
    parser.add_argument(
        "--speed-events",
        type=int,
        default=100_000,
        help="events of the training-speed step",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement")
    parser.add_argument(
        "--calls", type=int, default=200, help="inference calls per size"
    )
    parser.add_argument("--threads", type=int, default=2, help="PyTorch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = TrainerSettings(metrics_port=0, min_examples=100)
    out = sys.stdout
    out.write(
        f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs, "
        f"network embedding_dim={settings.embedding_dim} "
        f"experts={settings.expert_count}x{settings.expert_width} "
        f"tower={settings.tower_width}, "
        f"epochs={settings.epochs} batch_size={settings.batch_size}, "
        f"load average before: {os.getloadavg()[0]:.2f}\n\n"
    )
    out.write(
        "\n".join(bench_training(args.speed_events, settings, args.runs)) + "\n\n"
    )
    out.write("\n".join(bench_inference(settings, args.calls)) + "\n\n")
    out.write("\n".join(bench_refresh(args.rows, settings, args.runs)) + "\n")
    out.write(f"\nload average after: {os.getloadavg()[0]:.2f}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
