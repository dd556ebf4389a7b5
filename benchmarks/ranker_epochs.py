"""Held-out AUC of the multi-task and single-task rankers after each pass.

Command (from the repository root):

    .venv/bin/python benchmarks/ranker_epochs.py --dataset retailrocket \
        --epochs 8 --seeds 4 --input-dropout 0.2 --chain-gradient own_tower

The rows, split and network sizes are those of ``services.trainer.compare``.
Every model trains one pass at a time on all training rows (no validation
slice) and is scored on the held-out rows after each pass. The output has
one line per task, model and pass: the mean ± standard deviation over seeds.
It shows where each task peaks and where it starts to overfit.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace

import torch

from models.multitask.evaluation import evaluate
from models.multitask.features import TASKS
from models.multitask.model import build_model
from models.multitask.train import fit_feature_spec, train_model
from services.replay.settings import DEFAULT_DATA_DIR
from services.trainer.compare import ComparisonConfig, build_rows


def main() -> int:
    """Print the per-pass held-out AUC of every model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="retailrocket")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--input-dropout", type=float, default=0.2)
    parser.add_argument(
        "--chain-gradient", choices=("full", "own_tower"), default="own_tower"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows, _ = build_rows(args.dataset, DEFAULT_DATA_DIR, None, "cwepochs")
    config = ComparisonConfig()
    train, holdout = rows.split_by_time(config.holdout_fraction)
    spec = fit_feature_spec(train)
    multi = replace(
        config.model,
        input_dropout=args.input_dropout,
        chain_gradient=args.chain_gradient,
    )
    models = {"multi_task": multi}
    for task in TASKS:
        models[f"single_task_{task}"] = replace(
            multi, architecture="single_task", task=task
        )

    one_pass = replace(config.training, epochs=1, validation_fraction=0.0)
    results: dict[tuple[str, int, str], list[float]] = {}
    for seed in range(args.seeds):
        for name, model_config in models.items():
            torch.manual_seed(seed)
            model = build_model(spec, model_config)
            for epoch in range(1, args.epochs + 1):
                # A new shuffle per pass, fixed by the seed and the pass.
                train_model(
                    model, spec, train, replace(one_pass, seed=seed * 1000 + epoch)
                )
                for metric, value in evaluate(model, spec, holdout).items():
                    if metric.startswith("auc_"):
                        results.setdefault((metric, epoch, name), []).append(value)

    sys.stdout.write(
        f"dataset={args.dataset} seeds={args.seeds} "
        f"input_dropout={args.input_dropout} chain_gradient={args.chain_gradient}\n"
    )
    for (metric, epoch, name), values in sorted(results.items()):
        spread = statistics.pstdev(values) if len(values) > 1 else 0.0
        sys.stdout.write(
            f"{metric} pass={epoch} {name} "
            f"{statistics.fmean(values):.4f} ± {spread:.4f}\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
