"""Measure how well the scorer's session-kNN index finds each user's next item.

Command (from the repository root):

    .venv/bin/python benchmarks/session_knn_quality.py DATASET [--limit N]
        [--half-life SECONDS] [--position-decay POSITIONS]
        [--neighbour-position-decay POSITIONS]

The sample is read from where ``cartwheel replay`` reads it: the committed
sample for rees46, and ``CARTWHEEL_REPLAY_DATA_DIR`` (by default a
``shared/data`` folder beside the checkout) for the others.

The script replays a real sample in event-time order, without a broker or
Redis, through two recommenders: the scorer's ``SessionIndex`` with the
scorer's settings (``CARTWHEEL_SCORER_CANDIDATES__*``, three of which the
options replace), and the evaluation's session-kNN baseline
(``CARTWHEEL_EVALUATION_BASELINE_*``). After each event it requests a list
of ``--cutoff`` items (1 to 200, as the evaluation accepts) from each for
that event's session, leaving out the event's own item as the hot path
does. The list is scored against the same
user's next event, as ``cartwheel demo`` scores slates. The first 30 % of
the events only train both. It prints HR and MRR at the cutoff for each.

The settings are read as the services read them, before the sample is
loaded: an invalid variable stops the script with its name, value and
expected form (exit status 2), and one that names no setting is logged as
a warning.

The index alone is not a slate: the hot path merges it with other candidate
sources and ranks the result. The script isolates the index, so a change to
it can be checked on every sample in seconds instead of one demo per sample.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from schemas.events import Event
from services.bench.offline import SettingsLoader, add_sample_arguments, load_sample
from services.common.logging import configure_logging
from services.evaluation.baselines import SessionKnn
from services.evaluation.records import event_record
from services.evaluation.settings import BaselineSettings
from services.replay.settings import Settings as ReplaySettings
from services.scorer.session_knn import SessionIndex, session_key
from services.scorer.settings import CandidateSettings, ScorerSettings

_WARMUP_FRACTION = 0.3

# The options that replace a candidate setting: the setting's field and the
# unit of the value.
_OPTION_FIELDS = {
    "--half-life": ("session_half_life_seconds", "SECONDS"),
    "--position-decay": ("session_position_decay", "POSITIONS"),
    "--neighbour-position-decay": ("session_neighbour_position_decay", "POSITIONS"),
}

Recommender = Callable[[Event, str], list[str]]


@dataclass
class _Score:
    hits: int = 0
    reciprocal_ranks: float = 0.0

    def add(self, listed: Sequence[str], target: str) -> None:
        if target in listed:
            self.hits += 1
            self.reciprocal_ranks += 1.0 / (listed.index(target) + 1)


def _scorer_index(
    settings: CandidateSettings, cutoff: int
) -> tuple[Callable[[Event, str], None], Recommender]:
    index = SessionIndex(
        settings.session_index_size,
        settings.session_max_items,
        settings.session_samples_per_item,
        max_total_items=settings.session_index_items,
    )

    def update(event: Event, key: str) -> None:
        index.add(key, event.item_id, event.event_timestamp)

    def recommend(event: Event, key: str) -> list[str]:
        votes = index.recommend(
            key,
            event.event_timestamp,
            settings.session_neighbours,
            settings.session_half_life_seconds,
            position_decay=settings.session_position_decay,
            neighbour_position_decay=settings.session_neighbour_position_decay,
        )
        return [item_id for item_id, _ in votes if item_id != event.item_id][:cutoff]

    return update, recommend


def _baseline(
    settings: BaselineSettings, cutoff: int
) -> tuple[Callable[[Event, str], None], Recommender]:
    baseline = SessionKnn(cutoff, settings)

    def update(event: Event, key: str) -> None:
        baseline.update(replace(event_record(event), session_key=key))

    def recommend(event: Event, key: str) -> list[str]:
        record = replace(event_record(event), session_key=key)
        return baseline.recommend(record, cutoff, frozenset({event.item_id}))

    return update, recommend


def evaluate(
    events: Sequence[Event],
    settings: CandidateSettings,
    baseline: BaselineSettings,
    cutoff: int,
) -> tuple[int, dict[str, _Score]]:
    """Return the number of scored events and each recommender's score."""
    recommenders = {
        "scorer session-kNN index": _scorer_index(settings, cutoff),
        "evaluation session-kNN baseline": _baseline(baseline, cutoff),
    }
    scores = {name: _Score() for name in recommenders}
    previous: dict[str, dict[str, list[str]]] = {}
    first_scored = int(len(events) * _WARMUP_FRACTION)
    scored = 0
    for position, event in enumerate(events):
        listed = previous.get(event.user_id)
        if listed is not None and position >= first_scored:
            scored += 1
            for name, items in listed.items():
                scores[name].add(items, event.item_id)
        key = session_key(event.user_id, event.session_id)
        lists = {}
        for name, (update, recommend) in recommenders.items():
            update(event, key)
            lists[name] = recommend(event, key)
        previous[event.user_id] = lists
    return scored, scores


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0.0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sample_arguments(parser)
    for option, (field, unit) in _OPTION_FIELDS.items():
        info = CandidateSettings.model_fields[field]
        parser.add_argument(
            option,
            type=_positive_number,
            metavar=unit,
            help=f"{info.description} (default: "
            f"CARTWHEEL_SCORER_CANDIDATES__{field.upper()}, {info.default:g} "
            "unless set)",
        )
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    loader = SettingsLoader()
    replay = loader.load(ReplaySettings)
    scorer = loader.load(ScorerSettings)
    baseline = loader.load(BaselineSettings)
    loader.exit_if_invalid(parser)
    options = {
        field: getattr(args, option.removeprefix("--").replace("-", "_"))
        for option, (field, _) in _OPTION_FIELDS.items()
    }
    settings = scorer.candidates.model_copy(
        update={field: value for field, value in options.items() if value is not None}
    )
    _, events = load_sample(parser, args, replay)

    scored, scores = evaluate(events, settings, baseline, args.cutoff)
    print(f"{args.dataset}: {len(events)} events, {scored} scored")
    print()
    print(f"| recommender | HR@{args.cutoff} | MRR@{args.cutoff} |")
    print("|---|---:|---:|")
    for name, score in scores.items():
        hit_rate = score.hits / max(scored, 1)
        mrr = score.reciprocal_ranks / max(scored, 1)
        print(f"| {name} | {hit_rate:.4f} | {mrr:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
