"""Helpers for benchmarks that run hot-path stages in their own process.

``benchmarks/bench_hotpath.py --in-process``,
``benchmarks/slate_quality.py`` and ``benchmarks/session_knn_quality.py``
drive the features, learning and scoring stages (or parts of them)
directly, without a broker: these are the pieces they share.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic_settings import BaseSettings

from schemas.events import Event
from services.common.entrypoint import ENVIRONMENT_ERROR_STATUS
from services.common.errors import CartwheelError, InvalidSettingsError
from services.common.redis_features import EventPosition, EventStatus, FeatureStore
from services.common.settings import (
    CommandLineValue,
    KafkaSettings,
    RedisSettings,
    TopicSettings,
    join_error_lines,
    load_settings,
)
from services.evaluation.settings import MAX_CUTOFF
from services.hotpath.stages import AppliedEvent
from services.replay.datasets import Dataset, load_dataset, replayable_names
from services.replay.settings import Settings as ReplaySettings

__all__ = [
    "MemoryProducer",
    "SettingsLoader",
    "add_sample_arguments",
    "apply_wave",
    "count_argument",
    "load_sample",
]


_SettingsT = TypeVar("_SettingsT", bound=BaseSettings)

# The scripts use no broker and start their own Redis, so these blocks keep
# their defaults and their variables are not read.
_UNREAD_BLOCKS: dict[str, BaseSettings] = {
    "kafka": KafkaSettings.model_construct(),
    "redis": RedisSettings.model_construct(),
    "topics": TopicSettings.model_construct(),
}


class SettingsLoader:
    """A loader of a script's settings that reports every invalid one at once.

    Each class is loaded with :func:`load_settings`, as the services load
    it, so an unknown variable under its prefixes is logged as a WARNING and
    an invalid one is reported with its name, value and expected form. The
    Kafka, Redis and topic blocks are not read from the environment.
    """

    def __init__(self) -> None:
        self._problems: list[str] = []

    def load(self, settings_class: type[_SettingsT], **overrides: Any) -> _SettingsT:
        """Load ``settings_class`` with ``overrides`` in place of their variables.

        Returns:
            The settings, or the class's defaults unvalidated when a variable
            is invalid, so that the classes loaded after it are checked too.
            :meth:`exit_if_invalid` stops the script before they are used.
        """
        fields = settings_class.model_fields
        unread = {
            name: block for name, block in _UNREAD_BLOCKS.items() if name in fields
        }
        values = {**unread, **overrides}
        try:
            return load_settings(settings_class, **values)
        except InvalidSettingsError as exc:
            self._problems.append(str(exc))
        # The stand-in's other blocks are built without reading variables too.
        stand_in: dict[str, Any] = {
            name: info.annotation.model_construct()
            for name, info in fields.items()
            if isinstance(info.annotation, type)
            and issubclass(info.annotation, BaseSettings)
        }
        for name, value in values.items():
            stand_in[name] = (
                value.value if isinstance(value, CommandLineValue) else value
            )
        return settings_class.model_construct(**stand_in)

    def exit_if_invalid(self, parser: argparse.ArgumentParser) -> None:
        """Exit with status 2 and every invalid variable when any was found."""
        if self._problems:
            message = join_error_lines(self._problems)
            parser.exit(ENVIRONMENT_ERROR_STATUS, f"{parser.prog}: error: {message}\n")


class MemoryProducer:
    """A stand-in for the hot path's producer that keeps each value it is given."""

    def __init__(self) -> None:
        self.values: list[bytes] = []

    def produce(self, topic: str, key: bytes, value: bytes, on_delivery: Any) -> None:
        self.values.append(value)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float | None = None) -> int:
        return 0


def apply_wave(
    store: FeatureStore, wave: Sequence[Event], first_offset: int
) -> list[AppliedEvent]:
    """Apply a wave at offsets from ``first_offset`` of partition 0.

    Returns:
        The events that the stages after the features see: every event but
        the duplicates, with its before-snapshot.
    """
    positions = [EventPosition(0, first_offset + i) for i in range(len(wave))]
    results = store.apply_batch(wave, positions)
    received_at = time.time()
    return [
        AppliedEvent(
            result.event,
            result.user_features,
            result.item_features,
            received_at,
            position.partition,
            position.offset,
        )
        for result, position in zip(results, positions, strict=True)
        if result.status is not EventStatus.DUPLICATE
    ]


def count_argument(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """Return an argparse type that accepts integers from ``minimum`` to ``maximum``.

    Without ``maximum`` the integers have no upper bound.
    """
    expected = (
        f"an integer of at least {minimum}"
        if maximum is None
        else f"an integer from {minimum} to {maximum:,}"
    )

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


def add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``dataset``, ``--limit`` and ``--cutoff`` arguments."""
    parser.add_argument("dataset", choices=replayable_names())
    parser.add_argument(
        "--limit",
        type=count_argument(2),
        help="replay only the first N events (N >= 2)",
    )
    parser.add_argument(
        "--cutoff",
        type=count_argument(1, MAX_CUTOFF),
        default=20,
        help=f"list length K, from 1 to {MAX_CUTOFF} as the evaluation accepts "
        "(default: %(default)s)",
    )


def load_sample(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    settings: ReplaySettings,
) -> tuple[Dataset, list[Event]]:
    """Load the sample that ``args`` name from the data folder of ``settings``.

    Load ``settings`` with :class:`SettingsLoader`: its data folder is then
    the one that ``cartwheel replay`` and ``cartwheel demo`` read.

    Returns:
        The dataset and its first ``--limit`` events (all without it). A
        missing or unreadable sample exits through ``parser`` with its error.
    """
    try:
        dataset = load_dataset(
            args.dataset, settings.data_dir, data_dir_source="CARTWHEEL_REPLAY_DATA_DIR"
        )
    except CartwheelError as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    events = dataset.events[: args.limit] if args.limit else dataset.events
    return dataset, list(events)
