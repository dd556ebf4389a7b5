"""Measure the memory and speed of a session-kNN index filled to its bounds.

Command (from the repository root):

    .venv/bin/python benchmarks/bench_session_index.py
        [--size SESSIONS:ITEMS[:TOTAL] ...] [--lengths rees46 full]
        [--index hotpath api] [--churn 0.5]

No broker or Redis is involved. Each row runs in a fresh process with one
index of at most ``SESSIONS`` sessions, ``ITEMS`` items per session and
``TOTAL`` items in all (``none`` for no total). The process adds
``SESSIONS`` synthetic sessions, then ``--churn`` times as many again, so
that eviction runs:

- ``--index hotpath`` fills a ``SessionIndex`` one ``add`` at a time, as the
  scoring stage does. ``api`` fills the API's ``SharedSessionIndex`` with
  ``add_events`` in batches of 500 events, as its follower does. That index
  also keeps each user's newest session.
- ``--lengths rees46`` draws the distinct items of each session from the
  sessions of the committed REES46 sample (1 to 27, mean 2.3), and ``full``
  gives every session ``ITEMS`` items, the most the index allows;
- items come from a ``--catalog`` of a million 8- to 10-digit ids whose
  popularity falls as ``rank^-exponent`` (``--item-exponent``, 1.0 by
  default: drawn as often as the REES46 sample has session items, 8,237, it
  gives 55 % distinct items where the sample has 57 %); sessions are keyed
  by 9-digit user ids and UUID session ids, and every ``add`` gets newly
  built id strings, as parsed events give it. The catalog must hold at
  least ``ITEMS`` items. With an exponent so high that 100 rounds of random
  draws find too few distinct items for a session, the session's remaining
  items are the most popular ones it does not have yet.

Memory is the growth of VmRSS in ``/proc/self/status`` from just before the
first ``add``, at the bound and after the churn, and the growth of VmHWM
(peak RSS). ``--tracemalloc`` adds a second process per row that counts the
bytes Python allocated instead (without timings, since tracing slows every
allocation). The ``add`` times are those of single calls (``hotpath``) or of
a batch divided by its events (``api``), sampled over the whole fill;
``recommend`` runs with the scorer's default settings for ``--recommends``
of the most recently added sessions after the churn.

The sizes default to the scorer's defaults
(``CARTWHEEL_SCORER_CANDIDATES__SESSION_INDEX_SIZE``, ``__SESSION_MAX_ITEMS``
and ``__SESSION_INDEX_ITEMS``). ``SESSIONS`` must be at least 1, ``ITEMS``
at least 2 (the scorer's minimum) and ``TOTAL`` at least ``ITEMS``.
It prints one Markdown table, plus the resident memory of a process that has
only imported the API's or the hot path's modules, for comparison with the
memory limits in deploy/.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import itertools
import math
import os
import platform
import random
import re
import signal
import statistics
import sys
import time
import tracemalloc
import uuid
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from typing import Any, Literal, cast

import annotated_types
import numpy as np

from schemas.events import Event, EventType
from services.api.sessions import SharedSessionIndex
from services.bench.offline import count_argument
from services.common.parent_death import request_signal_on_parent_death
from services.replay.datasets import REES46_SAMPLE, rees46
from services.scorer.session_knn import SessionIndex, session_key
from services.scorer.settings import CandidateSettings

_BLOCK_SESSIONS = 1_000
_API_BATCH = 500
_ADD_SAMPLES = 50_000
_START_TIME = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
_SECONDS_PER_EVENT = 0.05
_MIB = 1024 * 1024
# Ids of one length repeat beyond this many ranks (see _item_ids).
_MAX_CATALOG = 90_000_000
# Rounds of random draws per session before the items still missing are
# taken by popularity rank. Rounds draw twice the session's length each, and
# the default workloads need one or two.
_DRAW_ROUNDS = 100


@dataclass(frozen=True)
class Row:
    """One index filled in one process."""

    index: Literal["hotpath", "api"]
    sessions: int
    max_items: int
    total_items: int | None
    lengths: Literal["rees46", "full"]
    samples_per_item: int
    catalog: int
    item_exponent: float
    churn: float
    recommends: int
    seed: int
    is_traced: bool = False


def rss_bytes(field: str = "VmRSS") -> int:
    """Return a memory line of ``/proc/self/status`` in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field} line")


def rees46_lengths() -> list[int]:
    """Return the distinct items of each session of the REES46 sample."""
    items: dict[str, set[str]] = {}
    for event in rees46.load(REES46_SAMPLE).events:
        key = session_key(event.user_id, event.session_id)
        items.setdefault(key, set()).add(event.item_id)
    return [len(found) for found in items.values()]


class Workload:
    """Synthetic sessions: lengths, users, session ids and Zipf-like items."""

    def __init__(self, row: Row) -> None:
        if row.catalog < row.max_items:
            raise ValueError(
                f"a catalog of {row.catalog} items cannot fill a session of "
                f"{row.max_items} distinct items"
            )
        self._rng = np.random.default_rng(row.seed)
        self._random = random.Random(row.seed)
        self._max_items = row.max_items
        self._lengths = [] if row.lengths == "full" else rees46_lengths()
        weights = np.arange(1, row.catalog + 1, dtype=np.float64) ** -row.item_exponent
        self._cumulative = np.cumsum(weights)
        self._item_ids = _item_ids(row.catalog)
        self.mean_length = (
            statistics.fmean(min(n, row.max_items) for n in self._lengths)
            if self._lengths
            else float(row.max_items)
        )

    def block(self, count: int) -> list[tuple[str, str, list[int]]]:
        """Return ``count`` sessions as (user id, session id, item ids)."""
        sessions = []
        for _ in range(count):
            length = self._max_items
            if self._lengths:
                length = min(self._random.choice(self._lengths), self._max_items)
            user_id = str(self._random.randrange(100_000_000, 1_000_000_000))
            session_id = str(uuid.UUID(int=self._random.getrandbits(128), version=4))
            sessions.append((user_id, session_id, self._distinct_items(length)))
        return sessions

    def _distinct_items(self, length: int) -> list[int]:
        found: dict[int, None] = {}
        for _ in range(_DRAW_ROUNDS):
            if len(found) >= length:
                break
            targets = self._rng.random(2 * length) * self._cumulative[-1]
            ranks = np.searchsorted(self._cumulative, targets, side="right")
            ranks = np.minimum(ranks, len(self._item_ids) - 1)
            found.update(dict.fromkeys(self._item_ids[ranks].tolist()))
        # Popularity falls so steeply that the draws found too few items.
        # Drawing without replacement would then pick the most popular items
        # left, so those fill the session. The catalog contains at least
        # ``length`` distinct ids, so this loop ends.
        rank = 0
        while len(found) < length:
            found.setdefault(int(self._item_ids[rank]))
            rank += 1
        return list(found)[:length]


def _item_ids(catalog: int) -> np.ndarray:
    """Return 8-, 9- and 10-digit ids, one per popularity rank.

    Rank r gets d = 8 + r mod 3 digits: ``10^(d-1) + (r * 7919003) mod M``
    with ``M = 9 * 10^(d-1)``. The multiplier has no prime factor of M (2, 3
    or 5), so ids of one length repeat only in catalogs above 90 million.
    """
    ranks = np.arange(catalog, dtype=np.int64)
    digits = 8 + ranks % 3
    low = 10 ** (digits - 1)
    return low + (ranks * 7_919_003) % (9 * low)


def interleaved(
    sessions: list[tuple[str, str, list[int]]], rng: random.Random
) -> Iterator[tuple[str, str, int]]:
    """Yield the block's events, sessions mixed, each session's items in order."""
    turns = [index for index, (_, _, items) in enumerate(sessions) for _ in items]
    rng.shuffle(turns)
    positions = [0] * len(sessions)
    for index in turns:
        user_id, session_id, items = sessions[index]
        yield user_id, session_id, items[positions[index]]
        positions[index] += 1


class Filler:
    """Add sessions to one index and time the adds."""

    def __init__(self, row: Row, workload: Workload) -> None:
        self.row = row
        self.workload = workload
        index_class = SharedSessionIndex if row.index == "api" else SessionIndex
        self.index = index_class(
            row.sessions,
            row.max_items,
            row.samples_per_item,
            max_total_items=row.total_items,
        )
        expected = row.sessions * (1 + row.churn) * workload.mean_length
        self._stride = max(1, round(expected / _ADD_SAMPLES))
        # Preallocated, so that the samples do not count as index memory.
        self.add_ns = array("q", bytes(8 * (_ADD_SAMPLES * 2 + 1_000)))
        self.samples = 0
        self.events = 0
        self.now = _START_TIME
        self.recent: deque[tuple[str, str]] = deque(maxlen=row.recommends)
        self._rng = random.Random(row.seed + 1)

    def fill(self, sessions: int) -> None:
        """Add ``sessions`` new sessions, in blocks of mixed events."""
        while sessions > 0:
            block = self.workload.block(min(_BLOCK_SESSIONS, sessions))
            sessions -= len(block)
            events = interleaved(block, self._rng)
            if isinstance(self.index, SharedSessionIndex):
                self._add_batches(self.index, events)
            else:
                self._add_each(self.index, events)
            self.recent.extend(
                (user_id, session_id) for user_id, session_id, _ in block
            )

    def _add_each(
        self, index: SessionIndex, events: Iterator[tuple[str, str, int]]
    ) -> None:
        for user_id, session_id, item in events:
            key = session_key(user_id, session_id)
            item_id = str(item)
            self.now += _SECONDS_PER_EVENT
            self.events += 1
            if self.events % self._stride or self.samples == len(self.add_ns):
                index.add(key, item_id, self.now)
                continue
            started = time.perf_counter_ns()
            index.add(key, item_id, self.now)
            self.add_ns[self.samples] = time.perf_counter_ns() - started
            self.samples += 1

    def _add_batches(
        self, index: SharedSessionIndex, events: Iterator[tuple[str, str, int]]
    ) -> None:
        while batch := [
            self._event(*event) for event in itertools.islice(events, _API_BATCH)
        ]:
            started = time.perf_counter_ns()
            index.add_events(batch)
            elapsed = time.perf_counter_ns() - started
            if self.samples < len(self.add_ns):
                self.add_ns[self.samples] = elapsed // len(batch)
                self.samples += 1

    def _event(self, user_id: str, session_id: str, item: int) -> Event:
        self.now += _SECONDS_PER_EVENT
        self.events += 1
        return Event.model_construct(
            event_id=f"bench-{self.events}",
            event_type=EventType.CLICK,
            user_id=user_id,
            item_id=str(item),
            event_time=datetime.fromtimestamp(self.now, UTC),
            session_id=session_id,
        )


def contents(index: SessionIndex) -> dict[str, int]:
    """Count the sessions, items and postings in the index's private tables."""
    sessions = index._sessions.values()
    postings = index._item_sessions.values()
    return {
        "sessions": len(index),
        "session_items": sum(len(session.items) for session in sessions),
        "distinct_items": len(index._item_sessions),
        "postings": sum(len(sessions) for sessions in postings),
    }


def time_recommend(filler: Filler) -> list[int]:
    """Return the ns of one ``recommend`` per recently added session."""
    settings = CandidateSettings()
    elapsed = []
    for user_id, session_id in filler.recent:
        key = session_key(user_id, session_id)
        started = time.perf_counter_ns()
        filler.index.recommend(
            key,
            filler.now,
            settings.session_neighbours,
            settings.session_half_life_seconds,
            position_decay=settings.session_position_decay,
            neighbour_position_decay=settings.session_neighbour_position_decay,
        )
        elapsed.append(time.perf_counter_ns() - started)
    return elapsed


def measure(row: Row) -> dict[str, Any]:
    """Fill one index with the sizes of ``row`` and return its memory and timings."""
    filler = Filler(row, Workload(row))
    if row.is_traced:
        tracemalloc.start()
    gc.collect()
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current RSS
    base = rss_bytes()
    result: dict[str, Any] = {}

    filler.fill(row.sessions)
    gc.collect()
    result["rss_bound"] = rss_bytes() - base
    result["traced_bound"] = tracemalloc.get_traced_memory()[0]
    result.update(contents(filler.index))

    filler.fill(round(row.sessions * row.churn))
    gc.collect()
    result["rss_churn"] = rss_bytes() - base
    result["rss_peak"] = rss_bytes("VmHWM") - base
    result["traced_peak"] = tracemalloc.get_traced_memory()[1]
    result["events"] = filler.events
    if row.is_traced:
        tracemalloc.stop()
        return result

    result["add_ns"] = sorted(filler.add_ns[: filler.samples])
    result["recommend_ns"] = sorted(time_recommend(filler))
    return result


def import_rss(modules: tuple[str, ...]) -> int:
    """Return the RSS of a fresh process after importing ``modules``."""
    for module in modules:
        importlib.import_module(module)
    gc.collect()
    return rss_bytes()


def in_fresh_process(function: Any, argument: Any) -> Any:
    """Run ``function(argument)`` in a new process, so memory starts clean."""
    with ProcessPoolExecutor(
        1,
        mp_context=get_context("spawn"),
        initializer=request_signal_on_parent_death,
        initargs=(signal.SIGTERM,),
    ) as pool:
        return pool.submit(function, argument).result()


def percentile(values: list[int], share: float) -> float:
    """Return the value below which ``share`` of the sorted ``values`` lie."""
    return float(values[min(len(values) - 1, int(share * len(values)))])


def table_line(row: Row, result: dict[str, Any], traced: dict[str, Any] | None) -> str:
    """Return one Markdown table line of a measured row."""
    sessions, items = result["sessions"], result["session_items"]
    add, recommend = result["add_ns"], result["recommend_ns"]
    cells = [
        row.index,
        f"{row.sessions:,} × {row.max_items}, "
        + ("none" if row.total_items is None else f"{row.total_items:,}"),
        row.lengths,
        f"{items / sessions:.1f}",
        f"{result['distinct_items']:,}",
        f"{result['postings']:,}",
        f"**{result['rss_bound'] / _MIB:,.0f}**",
        f"{result['rss_bound'] / sessions:,.0f}",
        f"{result['rss_bound'] / items:,.0f}",
        f"{result['rss_churn'] / _MIB:,.0f} / {result['rss_peak'] / _MIB:,.0f}",
        f"{percentile(add, 0.5) / 1e3:.1f} / {percentile(add, 0.99) / 1e3:.1f}",
        f"{percentile(recommend, 0.5) / 1e3:,.0f} / "
        f"{percentile(recommend, 0.99) / 1e3:,.0f}",
    ]
    if traced is not None:
        bound, peak = traced["traced_bound"], traced["traced_peak"]
        cells.append(f"{bound / _MIB:,.0f} / {peak / _MIB:,.0f}")
    return "| " + " | ".join(cells) + " |"


_HEADER = (
    "| index | sessions × max items, max total items | lengths "
    "| items per session | distinct items | postings "
    "| RSS growth at the bound, MiB | bytes per session | bytes per item "
    "| RSS growth after churn / peak, MiB | add µs p50 / p99 "
    "| recommend µs p50 / p99 |"
)


def parse_size(text: str) -> tuple[int, int, int | None]:
    """Parse ``SESSIONS:ITEMS[:TOTAL]``; TOTAL defaults to the scorer's default.

    Raises:
        argparse.ArgumentTypeError: the text is not of that form, SESSIONS is
            below 1, ITEMS below the scorer's minimum or TOTAL below ITEMS.
    """
    parts = text.replace("_", "").split(":")
    total: int | None = CandidateSettings().session_index_items
    try:
        if len(parts) not in (2, 3):
            raise ValueError(text)
        if len(parts) == 3:
            total = None if parts[2] == "none" else int(parts[2])
        sessions, items = int(parts[0]), int(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size {text!r} is not SESSIONS:ITEMS[:TOTAL], e.g. 100000:50 or "
            "100000:50:none"
        ) from None
    min_items = next(
        cast(int, constraint.ge)
        for constraint in CandidateSettings.model_fields["session_max_items"].metadata
        if isinstance(constraint, annotated_types.Ge)
    )
    if sessions < 1:
        problem = f"SESSIONS must be at least 1, got {sessions}"
    elif items < min_items:
        problem = (
            f"ITEMS must be at least {min_items}, the scorer's minimum of "
            f"CARTWHEEL_SCORER_CANDIDATES__SESSION_MAX_ITEMS, got {items}"
        )
    elif total is not None and total < items:
        problem = f"TOTAL must be at least ITEMS ({items}) or none, got {total}"
    else:
        return sessions, items, total
    raise argparse.ArgumentTypeError(f"size {text!r}: {problem}")


def number_argument(minimum: float) -> Callable[[str], float]:
    """Return an argparse type that accepts finite numbers of at least ``minimum``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected a finite number of at least {minimum:g}, got {text!r}"
            )
        return value

    return parse


def _attach_size_values(argv: Sequence[str]) -> list[str]:
    """Write ``--size -5:10`` as ``--size=-5:10``.

    argparse takes a value that starts with '-' and is not a plain number
    for an option, so it would report that --size has no value instead of
    what is wrong with the value.
    """
    attached: list[str] = []
    for argument in argv:
        if attached and attached[-1] == "--size" and re.match(r"-\d", argument):
            attached[-1] = f"--size={argument}"
        else:
            attached.append(argument)
    return attached


def main(argv: Sequence[str] | None = None) -> None:
    defaults = CandidateSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size",
        type=parse_size,
        action="append",
        help="SESSIONS:ITEMS[:TOTAL], repeatable; TOTAL none keeps no total "
        "(default: the scorer's defaults, "
        f"{defaults.session_index_size}:{defaults.session_max_items}:"
        f"{defaults.session_index_items})",
    )
    parser.add_argument(
        "--lengths",
        nargs="+",
        choices=("rees46", "full"),
        default=["rees46", "full"],
        help="session lengths: the REES46 sample's, or ITEMS for every session",
    )
    parser.add_argument(
        "--index",
        nargs="+",
        choices=("hotpath", "api"),
        default=["hotpath", "api"],
        help="SessionIndex filled by add, or SharedSessionIndex by add_events",
    )
    parser.add_argument(
        "--samples-per-item",
        type=count_argument(1),
        default=defaults.session_samples_per_item,
        help="sessions remembered per item (default: the scorer's default)",
    )
    parser.add_argument(
        "--catalog",
        type=count_argument(1, _MAX_CATALOG),
        default=1_000_000,
        help="items in the catalog, at least the largest ITEMS and at most "
        f"{_MAX_CATALOG:,}",
    )
    parser.add_argument(
        "--item-exponent",
        type=number_argument(0.0),
        default=1.0,
        help="item popularity falls as rank^-exponent (0 or more)",
    )
    parser.add_argument(
        "--churn",
        type=number_argument(0.0),
        default=0.5,
        help="new sessions added after the bound, as a share of SESSIONS",
    )
    parser.add_argument(
        "--recommends",
        type=count_argument(1),
        default=2_000,
        help="recommend calls timed",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the workload")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="also count allocated bytes"
    )
    args = parser.parse_args(
        _attach_size_values(sys.argv[1:] if argv is None else argv)
    )
    sizes = args.size or [
        (
            defaults.session_index_size,
            defaults.session_max_items,
            defaults.session_index_items,
        )
    ]
    largest = max(max_items for _, max_items, _ in sizes)
    if args.catalog < largest:
        parser.error(
            f"--catalog {args.catalog} is below ITEMS ({largest}) of a --size, "
            "but a session draws up to ITEMS distinct items from the catalog"
        )

    started = datetime.now(UTC)
    lines = [
        _HEADER
        + (" Python-allocated at the bound / peak, MiB |" if args.tracemalloc else "")
    ]
    lines.append("|---" * (_HEADER.count("|") - 1 + args.tracemalloc) + "|")
    for (sessions, max_items, total_items), lengths, index in itertools.product(
        sizes, args.lengths, args.index
    ):
        row = Row(
            index=index,
            sessions=sessions,
            max_items=max_items,
            total_items=total_items,
            lengths=lengths,
            samples_per_item=args.samples_per_item,
            catalog=args.catalog,
            item_exponent=args.item_exponent,
            churn=args.churn,
            recommends=args.recommends,
            seed=args.seed,
        )
        result = in_fresh_process(measure, row)
        traced = None
        if args.tracemalloc:
            traced_row = Row(**{**asdict(row), "is_traced": True})
            traced = in_fresh_process(measure, traced_row)
        lines.append(table_line(row, result, traced))
        print(lines[-1], flush=True)

    api = in_fresh_process(import_rss, ("services.api.__main__",))
    hotpath = in_fresh_process(
        import_rss, ("services.hotpath.__main__", "services.scorer.factory")
    )
    finished = datetime.now(UTC)
    print()
    print(
        f"{started:%Y-%m-%d %H:%M} to {finished:%H:%M} UTC, Python "
        f"{platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at the end; catalog "
        f"{args.catalog:,} items, exponent {args.item_exponent}, "
        f"{args.samples_per_item} sessions per item, churn {args.churn}"
    )
    print(
        f"RSS after imports only: API {api / _MIB:,.0f} MiB, "
        f"hot path {hotpath / _MIB:,.0f} MiB"
    )
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
