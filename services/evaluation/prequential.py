"""Prequential evaluation of published slates against the users' next events.

The evaluator replays every event in event-time order. For each user, the
products slate published after event N is scored against event N+1, and so
are the lists that each baseline proposes after learning from events 1..N of
all users. Slates of the other surfaces are scored against the later event
that their surface's hit rule names (see :mod:`services.evaluation.surfaces`).

Inputs are collected first and scored in :meth:`PrequentialEvaluator.evaluate`,
because slates and catalog records may arrive in any order relative to the
events they refer to. Equal event times keep the order in which the events
were added, and every other tie is broken by ids, so the same input gives
the same result.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from schemas.catalog import ItemRecord, PromotionRecord, ReviewRecord
from schemas.events import Event
from schemas.recommendations import Slate, Surface
from services.evaluation.catalog import CatalogView
from services.evaluation.metrics import (
    LatencySummary,
    RankingAccumulator,
    RankingScores,
    summarize_latency,
)
from services.evaluation.records import (
    EventRecord,
    SlateRecord,
    event_record,
    slate_record,
)
from services.evaluation.replay import ProductsReplay, UserTimelines
from services.evaluation.results import (
    SYSTEM_NAME,
    EvaluationResult,
    InputSummary,
    LatencyHistogram,
    Verdict,
)
from services.evaluation.settings import EvaluationSettings
from services.evaluation.surfaces import SURFACE_RULES, select_target, surface_rank

__all__ = ["PrequentialEvaluator", "evaluate_streams"]

logger = logging.getLogger(__name__)

_LATENCY_BINS = 40

CatalogInput = ItemRecord | PromotionRecord | ReviewRecord


class PrequentialEvaluator:
    """Collects events, slates and catalog records, then scores them.

    Args:
        settings: cutoffs, session gap, baseline parameters and the other
            evaluation settings; the Kafka and report settings are not used.
    """

    def __init__(self, settings: EvaluationSettings) -> None:
        # LIMITATION(L-61): every event and slate of the replay stays in memory
        # as a compact record until evaluate(), so memory grows linearly with
        # the replay. Evaluate very long replays in time windows.
        self._settings = settings
        self._events: list[EventRecord] = []
        self._event_ids: set[str] = set()
        self._duplicate_events = 0
        self._slates: dict[tuple[Surface, str], SlateRecord] = {}
        self._duplicate_slates = 0
        self._catalog = CatalogView()

    def add_event(self, event: Event) -> None:
        """Add one event; a repeated event_id is counted and dropped."""
        if event.event_id in self._event_ids:
            self._duplicate_events += 1
            return
        self._event_ids.add(event.event_id)
        self._events.append(event_record(event))

    def add_slate(self, slate: Slate) -> None:
        """Add one slate; of two for the same trigger and surface, keep the earliest."""
        record = slate_record(slate)
        key = (record.surface, record.trigger_event_id)
        kept = self._slates.get(key)
        if kept is not None:
            self._duplicate_slates += 1
            if (kept.generated_at, kept.recommendation_id) <= (
                record.generated_at,
                record.recommendation_id,
            ):
                return
        self._slates[key] = record

    def add_catalog_record(self, record: CatalogInput) -> None:
        """Add one catalog record; it replaces an earlier record of its key."""
        self._catalog.apply(record)

    def delete_catalog_key(self, key: str) -> None:
        """Apply a catalog tombstone such as ``item:<id>``."""
        self._catalog.delete(key)

    def evaluate(
        self,
        throughput_events_per_second: float | None = None,
        *,
        skipped_records: Mapping[str, int] | None = None,
    ) -> EvaluationResult:
        """Score everything added so far.

        Args:
            throughput_events_per_second: the system's measured throughput;
                when None it is estimated from the slates' generated_at spread.
            skipped_records: records per topic that the reader skipped as
                malformed, for the report's inputs.

        Returns:
            every metric of the evaluation.
        """
        events = self._sessionized(sorted(self._events, key=_event_time))
        timelines = UserTimelines(events)
        replay = ProductsReplay(self._settings, self._slates, self._catalog)
        for event in events:
            replay.step(event, timelines)
        surfaces = self._score_surfaces(timelines)
        throughput, source = self._throughput(throughput_events_per_second)
        ranking = _scores(replay.overall)
        unseen = _scores(replay.without_lookahead)
        logger.info(
            "evaluation scored events=%s scored_events=%s slates=%s",
            len(events),
            replay.overall[SYSTEM_NAME].count,
            len(self._slates),
        )
        return EvaluationResult(
            cutoffs=self._settings.cutoffs,
            recommenders=tuple(replay.overall),
            ranking=ranking,
            ranking_new_items=_scores(replay.new_items),
            ranking_without_lookahead=unseen,
            by_event_type={
                name: {t: acc.scores() for t, acc in by_type.items()}
                for name, by_type in replay.by_event_type.items()
            },
            by_surface={
                Surface.PRODUCTS.value: ranking[SYSTEM_NAME],
                **{s: acc.scores() for s, acc in surfaces.items()},
            },
            surface_rules=dict(SURFACE_RULES),
            beyond_accuracy=replay.beyond_accuracy(events),
            latency=self._latency(),
            latency_histogram=self._latency_histogram(),
            throughput_events_per_second=throughput,
            throughput_source=source,
            model_versions=self._model_versions(),
            by_model_version={
                version: replay.by_model_version[version].scores()
                for version in sorted(replay.by_model_version)
            },
            timeline=replay.timeline(self._settings.timeline_buckets),
            verdict=_verdict(ranking, self._settings.cutoffs[-1]),
            verdict_without_lookahead=_verdict(unseen, self._settings.cutoffs[-1]),
            inputs=self._summary(events, timelines, replay, skipped_records or {}),
            parameters=_parameters(self._settings),
        )

    def _sessionized(self, events: list[EventRecord]) -> list[EventRecord]:
        """Give events without a session_id a key that changes after a gap."""
        gap = self._settings.session_gap_seconds
        last_seen: dict[str, float] = {}
        session_number: dict[str, int] = {}
        result = []
        for event in events:
            if not event.session_key:
                user = event.user_id
                previous = last_seen.get(user)
                if previous is None or event.timestamp - previous > gap:
                    session_number[user] = session_number.get(user, -1) + 1
                last_seen[user] = event.timestamp
                key = f"{user}#{session_number[user]}"
                event = dataclasses.replace(event, session_key=key)
            result.append(event)
        return result

    def _score_surfaces(
        self, timelines: UserTimelines
    ) -> dict[str, RankingAccumulator]:
        scores = {
            surface.value: RankingAccumulator(self._settings.cutoffs)
            for surface in Surface
            if surface is not Surface.PRODUCTS
        }
        start = self._settings.score_from
        score_from = start.timestamp() if start else -math.inf
        for (surface, trigger_id), slate in sorted(self._slates.items()):
            located = timelines.locate(trigger_id)
            if surface is Surface.PRODUCTS or located is None:
                continue
            user_events, position = located
            target = select_target(surface, user_events, position)
            if target is not None and target.timestamp >= score_from:
                rank = surface_rank(slate, target, self._catalog)
                scores[surface.value].add(rank)
        return scores

    def _latency(self) -> dict[str, LatencySummary]:
        slates = sorted(self._slates.values(), key=lambda s: s.recommendation_id)
        summaries = {"all": summarize_latency(s.latency_ms for s in slates)}
        for surface in Surface:
            summaries[surface.value] = summarize_latency(
                s.latency_ms for s in slates if s.surface is surface
            )
        return summaries

    def _latency_histogram(self) -> LatencyHistogram:
        slates = self._slates.values()
        edges = np.histogram_bin_edges(
            np.fromiter((s.latency_ms for s in slates), dtype=np.float64),
            bins=_LATENCY_BINS,
        )
        counts = {}
        for surface in Surface:
            values = [s.latency_ms for s in slates if s.surface is surface]
            counts[surface.value] = [
                int(n) for n in np.histogram(values, bins=edges)[0]
            ]
        return LatencyHistogram([float(e) for e in edges], counts)

    def _throughput(self, given: float | None) -> tuple[float | None, str]:
        if given is not None:
            return given, "caller"
        # LIMITATION(L-60): the estimate divides by the whole publication span,
        # so a paced or paused replay lowers it. Pass the rate measured by the
        # replay (--throughput) to report capacity instead.
        triggers = {trigger for _, trigger in self._slates}
        times = sorted(slate.generated_at for slate in self._slates.values())
        # From 20 slates on, the span leaves out the earliest and the latest
        # 5 %, so a few slates with a wrong clock cannot stretch it to years.
        # The trigger count is scaled by the share of the span that remains.
        trim = len(times) // 20
        central = times[trim : len(times) - trim]
        spread = central[-1] - central[0] if central else 0.0
        if len(triggers) < 2 or spread <= 0.0:
            return None, "unavailable"
        share = (len(central) - 1) / (len(times) - 1)
        return len(triggers) * share / spread, "generated_at"

    def _model_versions(self) -> dict[str, int]:
        counts = Counter(
            slate.model_version
            for (surface, _), slate in self._slates.items()
            if surface is Surface.PRODUCTS
        )
        return dict(sorted(counts.items()))

    def _summary(
        self,
        events: list[EventRecord],
        timelines: UserTimelines,
        replay: ProductsReplay,
        skipped_records: Mapping[str, int],
    ) -> InputSummary:
        slate_counts = Counter(surface.value for surface, _ in self._slates)
        orphans = sum(
            1 for _, trigger in self._slates if timelines.locate(trigger) is None
        )
        return InputSummary(
            events=len(events),
            duplicate_events=self._duplicate_events,
            users=timelines.users,
            single_event_users=timelines.single_event_users,
            scored_events=replay.overall[SYSTEM_NAME].count,
            slates={s.value: slate_counts.get(s.value, 0) for s in Surface},
            duplicate_slates=self._duplicate_slates,
            orphan_slates=orphans,
            skipped_records={
                topic: count
                for topic, count in sorted(skipped_records.items())
                if count
            },
            targets_with_own_slate=replay.own_slates,
            targets_with_stale_slate=replay.stale_slates,
            targets_without_slate=replay.missing_slates,
            repeat_targets=replay.repeat_targets,
            lookahead_targets=replay.lookahead_targets,
        )


def evaluate_streams(
    events: Iterable[Event],
    slates: Iterable[Slate],
    catalog: Iterable[CatalogInput] = (),
    *,
    settings: EvaluationSettings | None = None,
    throughput_events_per_second: float | None = None,
) -> EvaluationResult:
    """Evaluate slates and baselines prequentially on in-memory streams.

    Args:
        events: the replayed events, in any order.
        slates: the slates the system published for them, of every surface.
        catalog: item, promotion and review records, in topic order.
        settings: evaluation settings; the defaults when None.
        throughput_events_per_second: the system's throughput when the caller
            measured it; otherwise estimated from the slates.

    Returns:
        every metric of the evaluation.
    """
    evaluator = PrequentialEvaluator(settings or EvaluationSettings())
    for record in catalog:
        evaluator.add_catalog_record(record)
    for event in events:
        evaluator.add_event(event)
    for slate in slates:
        evaluator.add_slate(slate)
    return evaluator.evaluate(throughput_events_per_second)


def _scores(
    accumulators: dict[str, RankingAccumulator],
) -> dict[str, dict[int, RankingScores]]:
    return {name: accumulator.scores() for name, accumulator in accumulators.items()}


def _event_time(event: EventRecord) -> float:
    return event.timestamp


def _verdict(ranking: dict[str, dict[int, RankingScores]], cutoff: int) -> Verdict:
    system = ranking[SYSTEM_NAME][cutoff]
    winners: dict[str, list[str]] = {"hit_rate": [], "mrr": []}
    if system.count == 0:
        return Verdict(cutoff, 0, beats_every_baseline=False, winning_baselines=winners)
    for name, by_cutoff in ranking.items():
        if name == SYSTEM_NAME:
            continue
        baseline = by_cutoff[cutoff]
        for metric in winners:
            if (getattr(baseline, metric) or 0.0) >= (getattr(system, metric) or 0.0):
                winners[metric].append(name)
    beats = not any(winners.values())
    return Verdict(cutoff, system.count, beats, winners)


def _parameters(settings: EvaluationSettings) -> dict[str, Any]:
    return {
        "cutoffs": list(settings.cutoffs),
        "session_gap_seconds": settings.session_gap_seconds,
        "score_from": settings.score_from.isoformat() if settings.score_from else None,
        "exclude_trigger_item": settings.exclude_trigger_item,
        "timeline_buckets": settings.timeline_buckets,
        "baselines": settings.baselines.model_dump(mode="json"),
    }
