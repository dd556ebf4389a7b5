"""PNG plots of an evaluation, drawn with matplotlib's Agg canvas.

Figures are built without pyplot, so plotting touches no global backend state
and works on machines without a display.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from services.evaluation.results import EvaluationResult

__all__ = [
    "plot_hit_rate_over_time",
    "plot_latency",
    "plot_ranking",
    "plot_surfaces",
]

_DPI = 100
# Dropping the "Software" text chunk (the matplotlib version) leaves no
# environment detail in the PNG files beyond the rendering itself.
_METADATA: dict[str, str | None] = {"Software": None}


def plot_hit_rate_over_time(result: EvaluationResult, path: Path) -> None:
    """Plot HR at the largest K per recommender over event-time buckets."""
    figure, axes = _figure()
    timeline = result.timeline
    k = result.cutoffs[-1]
    positions = np.arange(1, len(timeline.bucket_end_times) + 1)
    for name in result.recommenders:
        rates = timeline.hit_rates.get(name, [])
        axes.plot(positions, rates, marker=".", label=name)
    if timeline.bucket_end_times:
        ticks = _tick_positions(len(positions))
        axes.set_xticks(positions[ticks])
        axes.set_xticklabels(
            [timeline.bucket_end_times[i][5:16] for i in ticks], rotation=30
        )
    axes.set_xlabel("end of bucket (event time, UTC)")
    axes.set_ylabel(f"HR@{k}")
    axes.set_title(f"HR@{k} over time, {len(positions)} equal-size buckets")
    axes.legend(loc="best", fontsize="small")
    _save(figure, path)


def plot_latency(result: EvaluationResult, path: Path) -> None:
    """Plot the event-to-slate latency distribution per surface."""
    figure, axes = _figure()
    histogram = result.latency_histogram
    edges = np.asarray(histogram.edges_ms)
    # Surfaces published by one batch share a latency, so their lines overlap;
    # distinct line styles keep each visible.
    styles = ["-", "--", ":", "-."]
    for index, (surface, counts) in enumerate(histogram.counts.items()):
        if sum(counts):
            style = styles[index % len(styles)]
            axes.stairs(counts, edges, label=surface, linestyle=style, linewidth=1.5)
    summary = result.latency["all"]
    for label, value in (("p50", summary.p50_ms), ("p99", summary.p99_ms)):
        if value is not None:
            axes.axvline(value, linestyle="--", linewidth=1, color="grey")
            axes.annotate(label, (value, 0), xytext=(2, 2), textcoords="offset points")
    axes.set_xlabel("event-to-slate latency (ms)")
    axes.set_ylabel("slates")
    axes.set_title(f"Latency distribution, {summary.count} slates")
    if any(sum(counts) for counts in histogram.counts.values()):
        axes.legend(loc="best", fontsize="small")
    _save(figure, path)


def plot_surfaces(result: EvaluationResult, path: Path) -> None:
    """Plot the system's HR at each K per surface as grouped bars."""
    figure, axes = _figure()
    surfaces = list(result.by_surface)
    width = 0.8 / len(result.cutoffs)
    positions = np.arange(len(surfaces))
    for index, k in enumerate(result.cutoffs):
        rates = [result.by_surface[s][k].hit_rate or 0.0 for s in surfaces]
        axes.bar(positions + index * width, rates, width, label=f"HR@{k}")
    labels = [
        f"{s}\n({result.by_surface[s][result.cutoffs[0]].count} slates)"
        for s in surfaces
    ]
    axes.set_xticks(positions + width * (len(result.cutoffs) - 1) / 2)
    axes.set_xticklabels(labels)
    axes.set_ylabel("hit rate")
    axes.set_title("Cartwheel per surface")
    axes.legend(loc="best", fontsize="small")
    _save(figure, path)


def plot_ranking(result: EvaluationResult, path: Path) -> None:
    """Plot HR and MRR at the largest K for the system and every baseline."""
    figure, axes = _figure()
    k = result.cutoffs[-1]
    names = list(result.recommenders)
    positions = np.arange(len(names))
    hit_rates = [result.ranking[n][k].hit_rate or 0.0 for n in names]
    mrrs = [result.ranking[n][k].mrr or 0.0 for n in names]
    axes.bar(positions - 0.2, hit_rates, 0.4, label=f"HR@{k}")
    axes.bar(positions + 0.2, mrrs, 0.4, label=f"MRR@{k}")
    axes.set_xticks(positions)
    axes.set_xticklabels(names, rotation=15)
    axes.set_title(f"Products lists, K = {k}")
    axes.legend(loc="best", fontsize="small")
    _save(figure, path)


def _figure() -> tuple[Figure, Axes]:
    figure = Figure(figsize=(8, 4.5), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _tick_positions(count: int, at_most: int = 8) -> list[int]:
    step = max(1, -(-count // at_most))
    return list(range(0, count, step))


def _save(figure: Figure, path: Path) -> None:
    figure.savefig(path, format="png", metadata=_METADATA)
