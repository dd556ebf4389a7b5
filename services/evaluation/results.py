"""The numbers an evaluation produces, as plain immutable data."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from services.evaluation.metrics import LatencySummary, RankingScores

__all__ = [
    "SYSTEM_NAME",
    "BeyondAccuracy",
    "EvaluationResult",
    "InputSummary",
    "LatencyHistogram",
    "Timeline",
    "Verdict",
]

# The name under which the published slates appear beside the baselines.
SYSTEM_NAME = "cartwheel"

RankingByCutoff = dict[int, RankingScores]


@dataclass(frozen=True)
class InputSummary:
    """What the evaluator read and how much of it could be scored.

    Attributes:
        events: distinct events read.
        duplicate_events: events dropped because their event_id came before.
        users: distinct users.
        single_event_users: users with one event, who have no next event.
        scored_events: events with an earlier event of the same user, from
            ``score_from`` on, each the target of one products list per
            recommender.
        slates: distinct slates read, per surface.
        duplicate_slates: slates dropped because another slate of the same
            surface had the same trigger event (the earliest one is kept).
        orphan_slates: slates whose trigger event is not among the events.
        skipped_records: records skipped as malformed while reading, per
            topic; only topics with skipped records appear.
        targets_with_own_slate: scored events whose previous event had a
            products slate.
        targets_with_stale_slate: scored events whose previous event had
            none, scored against the user's last earlier products slate.
        targets_without_slate: scored events with no products slate before
            them, which count as misses.
        lookahead_targets: scored events that the system had read before it
            published the slate they are scored against (the target's own
            slate records when it was read). The hot path never applies a
            user's event before it has scored that user's earlier events, so
            the slate did not use the target itself.
        repeat_targets: scored events on the same item as the previous event.
            Slates never contain the trigger item, so these are misses for the
            system (and for baselines when the trigger item is excluded).
    """

    events: int
    duplicate_events: int
    users: int
    single_event_users: int
    scored_events: int
    slates: dict[str, int]
    duplicate_slates: int
    orphan_slates: int
    skipped_records: dict[str, int]
    targets_with_own_slate: int
    targets_with_stale_slate: int
    targets_without_slate: int
    repeat_targets: int
    lookahead_targets: int


@dataclass(frozen=True)
class BeyondAccuracy:
    """Coverage, diversity and novelty of one recommender's scored lists.

    Attributes:
        lists: lists measured, cut at the largest cutoff.
        recommended_items: distinct items in those lists.
        catalog_items: size of the item universe (catalog items, or items
            seen in events when the catalog is empty).
        coverage: ``recommended_items / catalog_items``.
        diversity: mean share of item pairs in a list whose categories
            differ; None without categories.
        novelty: mean self-information in bits of the listed items, from
            their popularity over the whole replay.
    """

    lists: int
    recommended_items: int
    catalog_items: int
    coverage: float | None
    diversity: float | None
    novelty: float | None


@dataclass(frozen=True)
class LatencyHistogram:
    """Counts of slates per latency bin, with the same bins for every surface.

    Attributes:
        edges_ms: bin edges in milliseconds, one more than the bins.
        counts: per surface, slates per bin.
    """

    edges_ms: list[float]
    counts: dict[str, list[int]]


@dataclass(frozen=True)
class Timeline:
    """HR at the largest cutoff per recommender, over consecutive event buckets.

    Attributes:
        bucket_end_times: ISO time of the last scored event of each bucket.
        bucket_sizes: scored events per bucket.
        hit_rates: per recommender, one value per bucket.
    """

    bucket_end_times: list[str]
    bucket_sizes: list[int]
    hit_rates: dict[str, list[float]]


@dataclass(frozen=True)
class Verdict:
    """Whether the system beats every baseline at the largest cutoff.

    Attributes:
        cutoff: the K compared.
        scored_lists: products lists scored per recommender; with none, no
            recommender beats another.
        beats_every_baseline: True when the system's HR@K and MRR@K are both
            strictly higher than every baseline's.
        winning_baselines: per metric ("hit_rate", "mrr"), the baselines whose
            value is at least the system's.
    """

    cutoff: int
    scored_lists: int
    beats_every_baseline: bool
    winning_baselines: dict[str, list[str]]


@dataclass(frozen=True)
class EvaluationResult:
    """Every number of one prequential evaluation.

    Attributes:
        cutoffs: the list lengths K.
        recommenders: the system first, then the baselines.
        ranking: HR, MRR and NDCG of the products lists per recommender and K.
        ranking_new_items: the same, over the events whose item differs from
            the previous event's item, the targets a slate without the
            trigger item can hit.
        ranking_without_lookahead: the same, over the events that the system
            had not read when it published the slate they are scored against.
        by_event_type: the same, split by the type of the target event.
        by_surface: the system's slates per surface; each surface's hit rule
            is in ``surface_rules``.
        surface_rules: one sentence per surface saying what counts as a hit.
        beyond_accuracy: coverage, diversity and novelty per recommender.
        latency: event-to-slate latency per surface and over all slates.
        latency_histogram: the latency distribution per surface.
        throughput_events_per_second: events the system processed per second.
        throughput_source: "caller", "generated_at" or "unavailable".
        model_versions: products slates per model version.
        by_model_version: the system's products scores per model version of
            the slate scored, for replays during which the model changes.
        timeline: HR at the largest K over event time.
        verdict: whether the system beats every baseline.
        verdict_without_lookahead: the same, without look-ahead events.
        inputs: what was read.
        parameters: settings of the evaluation and the baselines.
    """

    cutoffs: tuple[int, ...]
    recommenders: tuple[str, ...]
    ranking: dict[str, RankingByCutoff]
    ranking_new_items: dict[str, RankingByCutoff]
    ranking_without_lookahead: dict[str, RankingByCutoff]
    by_event_type: dict[str, dict[str, RankingByCutoff]]
    by_surface: dict[str, RankingByCutoff]
    surface_rules: dict[str, str]
    beyond_accuracy: dict[str, BeyondAccuracy]
    latency: dict[str, LatencySummary]
    latency_histogram: LatencyHistogram
    throughput_events_per_second: float | None
    throughput_source: str
    model_versions: dict[str, int]
    by_model_version: dict[str, RankingByCutoff]
    timeline: Timeline
    verdict: Verdict
    verdict_without_lookahead: Verdict
    inputs: InputSummary
    parameters: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data, with cutoffs as string keys."""
        data: dict[str, Any] = _jsonable(dataclasses.asdict(self))
        return data


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _jsonable(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(inner) for inner in value]
    return value
