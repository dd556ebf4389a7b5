"""Writes an evaluation as report.md, metrics.json and PNG plots.

The same result always gives the same files: numbers are rounded in the text
only, JSON keys are sorted, and plots carry no timestamp.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.evaluation.metrics import RankingScores
from services.evaluation.results import SYSTEM_NAME, EvaluationResult, Verdict

__all__ = ["ReportFiles", "summary_lines", "verdict_sentence", "write_report"]


def _plots() -> dict[str, Callable[[EvaluationResult, Path], None]]:
    """Return each plot's file name and function.

    The plots module loads matplotlib, so it is imported only when a report
    is written, not by every cartwheel command that imports this module.
    """
    from services.evaluation.plots import (
        plot_hit_rate_over_time,
        plot_latency,
        plot_ranking,
        plot_surfaces,
    )

    return {
        "hr_over_time.png": plot_hit_rate_over_time,
        "latency.png": plot_latency,
        "surfaces.png": plot_surfaces,
        "ranking.png": plot_ranking,
    }


@dataclass(frozen=True)
class ReportFiles:
    """Paths of the files of one report."""

    directory: Path
    markdown: Path
    metrics_json: Path
    plots: list[Path]


def write_report(result: EvaluationResult, directory: Path) -> ReportFiles:
    """Write the report files into ``directory``, creating it when needed.

    Returns:
        the paths written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    metrics_json = directory / "metrics.json"
    metrics_json.write_text(
        json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    plots = []
    for file_name, plot in _plots().items():
        path = directory / file_name
        plot(result, path)
        plots.append(path)
    markdown = directory / "report.md"
    markdown.write_text(render_markdown(result), encoding="utf-8")
    return ReportFiles(directory, markdown, metrics_json, plots)


def verdict_sentence(result: EvaluationResult) -> str:
    """Return plain sentences on whether the system beats every baseline.

    Where a baseline matches or beats the system, the sentence names it, the
    metric and both values. When some scored events reached the system before
    the slate they are scored against was published, a second sentence gives
    the verdict without those events, and how many events that leaves.
    """
    if not result.inputs.slates.get("products"):
        return (
            "No products slate was read, so Cartwheel is not compared with the "
            "baselines: check that the hot path ran on these events and reads "
            "the same topics."
        )
    sentence = _verdict_text(result.verdict, result.ranking, "on this replay")
    lookahead = result.inputs.lookahead_targets
    if lookahead == 0:
        return sentence
    share = lookahead / result.inputs.scored_events
    unseen = result.verdict_without_lookahead
    if unseen.scored_lists == 0:
        scope = "on the other events"
    elif unseen.scored_lists == 1:
        scope = "on the other 1 event"
    else:
        scope = f"on the other {unseen.scored_lists} events"
    clean = _verdict_text(unseen, result.ranking_without_lookahead, scope)
    return (
        f"{sentence} {lookahead} of {result.inputs.scored_events} scored events "
        f"({share:.0%}) were read by Cartwheel before the slate they are scored "
        "against was published, because the hot path reads in batches. It "
        "applies and scores a batch in waves with no user twice, so none of "
        "those slates used its target or any other later event of the same "
        "user, but they may use other users' events read in the same "
        f"wave (L-55). {clean}"
    )


def _verdict_text(
    verdict: Verdict, ranking: dict[str, dict[int, RankingScores]], scope: str
) -> str:
    k = verdict.cutoff
    if verdict.scored_lists == 0:
        return (
            f"No next event could be scored {scope} (every user has a single "
            "event, or none falls after score_from), so Cartwheel is not "
            "compared with the baselines."
        )
    if not any(scores[k].hit_rate for scores in ranking.values()):
        scored = verdict.scored_lists
        events = "1 scored event" if scored == 1 else f"{scored} scored events"
        return (
            f"Neither Cartwheel nor any baseline found a next item in its top {k} "
            f"{scope} ({events}), so this replay cannot tell them apart; replay "
            "more events."
        )
    if verdict.beats_every_baseline:
        sentence = f"Cartwheel beats every baseline on HR@{k} and MRR@{k} {scope}."
        narrow = _narrow_leads(ranking, k, verdict.scored_lists)
        return f"{sentence} {narrow}" if narrow else sentence
    parts = [
        _losing_metric(ranking, winners, metric, k)
        for metric, winners in verdict.winning_baselines.items()
        if winners
    ]
    return f"Cartwheel does not beat every baseline {scope}: {'; '.join(parts)}."


def _narrow_leads(
    ranking: dict[str, dict[int, RankingScores]], k: int, scored: int
) -> str:
    """Return a sentence on each lead over the best baseline that is within noise.

    The noise is one standard error of the system's value over ``scored``
    lists: sqrt(p(1 - p)/n) for a hit rate, and at most sqrt(MRR/n) for an
    MRR, whose values lie between 0 and 1.
    """
    system = ranking[SYSTEM_NAME][k]
    leads = []
    for metric, label in (("hit_rate", "HR"), ("mrr", "MRR")):
        value = getattr(system, metric)
        others = [
            (getattr(scores[k], metric), name)
            for name, scores in ranking.items()
            if name != SYSTEM_NAME and getattr(scores[k], metric) is not None
        ]
        if value is None or not others or scored == 0:
            continue
        best, name = max(others)
        spread = value * (1.0 - value) if metric == "hit_rate" else value
        error = math.sqrt(spread / scored)
        if value - best < error:
            leads.append(
                f"{label}@{k} over {name} ({_number(value)} against "
                f"{_number(best)}, one standard error about {_number(error)})"
            )
    if not leads:
        return ""
    return (
        f"The lead on {' and on '.join(leads)} is smaller than one standard "
        "error, so it is within noise."
    )


def _losing_metric(
    ranking: dict[str, dict[int, RankingScores]],
    winners: list[str],
    metric: str,
    k: int,
) -> str:
    """Return which baselines match or beat the system on one metric, with values."""
    label = {"hit_rate": "HR", "mrr": "MRR"}[metric]
    entries = [
        f"{name} ({_number(getattr(ranking[name][k], metric))})" for name in winners
    ]
    if len(entries) == 1:
        listed, verb = entries[0], "matches or beats"
    else:
        listed = f"{', '.join(entries[:-1])} and {entries[-1]}"
        verb = "match or beat"
    system = _number(getattr(ranking[SYSTEM_NAME][k], metric))
    return f"on {label}@{k}, {listed} {verb} Cartwheel's {system}"


def summary_lines(result: EvaluationResult) -> list[str]:
    """Return a short plain-text summary for a terminal."""
    k = result.cutoffs[-1]
    lines = [f"{'recommender':<14} {'HR@' + str(k):>8} {'MRR@' + str(k):>8}"]
    for name in result.recommenders:
        scores = result.ranking[name][k]
        lines.append(
            f"{name:<14} {_number(scores.hit_rate):>8} {_number(scores.mrr):>8}"
        )
    latency = result.latency["all"]
    lines.append(
        f"latency ms: p50 {_number(latency.p50_ms, 1)}, "
        f"p95 {_number(latency.p95_ms, 1)}, p99 {_number(latency.p99_ms, 1)} "
        f"over {latency.count} slates"
    )
    lines.append(f"throughput: {_throughput(result)}")
    lines.append(verdict_sentence(result))
    return lines


def render_markdown(result: EvaluationResult) -> str:
    """Return the Markdown text of the report."""
    sections = [
        ["# Cartwheel evaluation report", "", verdict_sentence(result)],
        _inputs_section(result),
        _ranking_section(result),
        _subset_section(
            result,
            "Products, next events on a new item",
            "Only the next events whose item differs from the previous event's "
            "item. Products slates leave out the trigger item, so these are the "
            "targets they can hit.",
            result.ranking_new_items,
        ),
        _subset_section(
            result,
            "Products, next events the system had not read yet",
            "Only the next events that reached Cartwheel after it published the "
            "slate they are scored against, that is, events not read in one "
            "batch with their trigger.",
            result.ranking_without_lookahead,
        ),
        _event_type_section(result),
        _surface_section(result),
        _latency_section(result),
        _beyond_accuracy_section(result),
        _plots_section(),
        _method_section(result),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def _inputs_section(result: EvaluationResult) -> list[str]:
    inputs = result.inputs
    rows = [
        ("events", inputs.events),
        ("duplicate events dropped", inputs.duplicate_events),
        ("users", inputs.users),
        ("users with a single event", inputs.single_event_users),
        ("scored events (a previous event of the user exists)", inputs.scored_events),
        (
            "scored against the previous event's own slate",
            inputs.targets_with_own_slate,
        ),
        ("scored against an older slate of the user", inputs.targets_with_stale_slate),
        ("no products slate before them (misses)", inputs.targets_without_slate),
        ("same item as the previous event", inputs.repeat_targets),
        (
            "read by Cartwheel before the slate scored against them",
            inputs.lookahead_targets,
        ),
        *((f"slates: {s}", n) for s, n in inputs.slates.items()),
        ("duplicate slates dropped", inputs.duplicate_slates),
        ("slates whose trigger event was not read", inputs.orphan_slates),
        *_skipped_rows(inputs.skipped_records),
    ]
    return [
        "## Inputs",
        "",
        "| quantity | count |",
        "|---|---:|",
        *(f"| {label} | {count} |" for label, count in rows),
    ]


def _skipped_rows(skipped_records: dict[str, int]) -> list[tuple[str, int]]:
    if not skipped_records:
        return [("malformed records skipped", 0)]
    return [
        (f"malformed records skipped: {topic}", count)
        for topic, count in skipped_records.items()
    ]


def _ranking_section(result: EvaluationResult) -> list[str]:
    lines = [
        "## Products: system and baselines",
        "",
        "Each list is scored against the item of the user's next event.",
    ]
    for k in result.cutoffs:
        lines += [
            "",
            f"### K = {k}",
            "",
            f"| recommender | HR@{k} | MRR@{k} | NDCG@{k} | lists |",
            "|---|---:|---:|---:|---:|",
        ]
        for name in result.recommenders:
            lines.append(_scores_row(name, result.ranking[name][k]))
    return lines


def _subset_section(
    result: EvaluationResult,
    title: str,
    description: str,
    ranking: dict[str, dict[int, RankingScores]],
) -> list[str]:
    k = result.cutoffs[-1]
    lines = [
        f"## {title}",
        "",
        f"{description} K = {k}; every K is in metrics.json.",
        "",
        f"| recommender | HR@{k} | MRR@{k} | NDCG@{k} | lists |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in result.recommenders:
        lines.append(_scores_row(name, ranking[name][k]))
    return lines


def _event_type_section(result: EvaluationResult) -> list[str]:
    k = result.cutoffs[-1]
    lines = [
        "## Products by the type of the next event",
        "",
        f"Did the item of the next click, cart add or purchase appear in the list? "
        f"K = {k}; every K is in metrics.json.",
        "",
        f"| recommender | next event | HR@{k} | MRR@{k} | NDCG@{k} | lists |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name in result.recommenders:
        for event_type, by_cutoff in result.by_event_type[name].items():
            lines.append(_scores_row(f"{name} | {event_type}", by_cutoff[k]))
    return lines


def _surface_section(result: EvaluationResult) -> list[str]:
    header = " | ".join(f"HR@{k} | MRR@{k}" for k in result.cutoffs)
    align = "|".join("---:|---:" for _ in result.cutoffs)
    lines = [
        "## Cartwheel per surface",
        "",
        f"| surface | slates scored | {header} |",
        f"|---|---:|{align}|",
    ]
    for surface, by_cutoff in result.by_surface.items():
        count = by_cutoff[result.cutoffs[0]].count
        cells = " | ".join(
            f"{_number(by_cutoff[k].hit_rate)} | {_number(by_cutoff[k].mrr)}"
            for k in result.cutoffs
        )
        lines.append(f"| {surface} | {count} | {cells} |")
    lines += ["", "What counts as a hit:", ""]
    lines += [f"- {surface}: {rule}." for surface, rule in result.surface_rules.items()]
    return lines


def _latency_section(result: EvaluationResult) -> list[str]:
    lines = [
        "## Event-to-slate latency and throughput",
        "",
        "| surface | slates | p50 ms | p95 ms | p99 ms | mean ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for surface, latency in result.latency.items():
        values = [latency.p50_ms, latency.p95_ms, latency.p99_ms]
        values += [latency.mean_ms, latency.max_ms]
        cells = " | ".join(_number(v, 1) for v in values)
        lines.append(f"| {surface} | {latency.count} | {cells} |")
    lines += ["", f"Throughput: {_throughput(result)}."]
    if result.model_versions:
        k = result.cutoffs[-1]
        lines += [
            "",
            "Products slates per model version, and the scores of those that "
            "preceded a next event:",
            "",
            f"| model version | slates | scored | HR@{k} | MRR@{k} |",
            "|---|---:|---:|---:|---:|",
        ]
        for version, count in result.model_versions.items():
            scores = result.by_model_version.get(version, {}).get(k)
            scored = scores.count if scores else 0
            hit_rate = _number(scores.hit_rate) if scores else "n/a"
            mrr = _number(scores.mrr) if scores else "n/a"
            lines.append(f"| `{version}` | {count} | {scored} | {hit_rate} | {mrr} |")
    return lines


def _beyond_accuracy_section(result: EvaluationResult) -> list[str]:
    k = result.cutoffs[-1]
    lines = [
        "## Coverage, diversity and novelty",
        "",
        f"Over the scored products lists, cut at K = {k}. Coverage is the share of "
        "catalog items listed at least once; diversity the mean share of item "
        "pairs in a list from different categories; novelty the mean "
        "self-information of listed items in bits (higher is less popular).",
        "",
        "| recommender | lists | items listed | catalog items | coverage "
        "| diversity | novelty |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in result.recommenders:
        stats = result.beyond_accuracy[name]
        lines.append(
            f"| {name} | {stats.lists} | {stats.recommended_items} | "
            f"{stats.catalog_items} | {_number(stats.coverage)} | "
            f"{_number(stats.diversity)} | {_number(stats.novelty, 2)} |"
        )
    return lines


def _plots_section() -> list[str]:
    return [
        "## Plots",
        "",
        "![HR over time](hr_over_time.png)",
        "",
        "![Latency distribution](latency.png)",
        "",
        "![Per-surface results](surfaces.png)",
        "",
        "![System and baselines](ranking.png)",
    ]


def _method_section(result: EvaluationResult) -> list[str]:
    parameters = json.dumps(result.parameters, indent=2, sort_keys=True)
    return [
        "## Method",
        "",
        "Events are replayed in event-time order. The products slate published "
        "after a user's event N is scored against the user's event N+1. Each "
        "baseline learns from every event up to N, of all users, before it "
        f"proposes its list for N+1. `{SYSTEM_NAME}` is the published slates; "
        "an event with no slate before it counts as a miss. When "
        "`exclude_trigger_item` is true, baseline lists leave out the item of "
        "event N, as slates do.",
        "",
        "```json",
        parameters,
        "```",
    ]


def _scores_row(label: str, scores: RankingScores) -> str:
    return (
        f"| {label} | {_number(scores.hit_rate)} | {_number(scores.mrr)} | "
        f"{_number(scores.ndcg)} | {scores.count} |"
    )


def _throughput(result: EvaluationResult) -> str:
    value = result.throughput_events_per_second
    if value is None:
        return "not measured (fewer than two slates with distinct generated_at)"
    source = {
        "caller": "measured by the caller",
        "generated_at": "estimated from the slates' generated_at spread",
    }.get(result.throughput_source, result.throughput_source)
    return f"{value:,.1f} events/s, {source}"


def _number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
