"""Run the hot path: ``python -m services.hotpath``.

Load settings, configure logging, serve /metrics, then consume until SIGINT or
SIGTERM, which finish the current batch before the process exits. A broker
that has stopped is not waited for (see :mod:`services.hotpath.consumer`).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
from collections.abc import Sequence
from typing import Any

import redis
from confluent_kafka import Consumer, Producer
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.backoff import NoBackoff
from redis.retry import Retry

from services.common.entrypoint import parse_service_arguments, run_entry_point
from services.common.errors import InvalidSettingsError
from services.common.kafka import (
    TopicSpec,
    consumer_config,
    producer_config,
    verify_topics,
)
from services.common.lifecycle import (
    serve_metrics,
    stop_on_signals,
    tune_garbage_collection,
)
from services.common.logging import configure_logging
from services.common.redis_check import verify_redis
from services.common.redis_features import FeatureStore
from services.common.settings import (
    PlainIntegers,
    join_error_lines,
    load_settings,
    masked_settings,
)
from services.hotpath.consumer import HotPathConsumer
from services.hotpath.settings import HotPathSettings, StageNames
from services.hotpath.stages import Stage

__all__ = [
    "build_consumer",
    "load_checked_settings",
    "load_stages",
    "resolve_stage_factories",
    "main",
    "redis_client",
    "run",
    "stage_settings_classes",
    "start_stages",
]

logger = logging.getLogger(__name__)


def load_stages(
    specs: Sequence[str], settings: HotPathSettings, client: redis.Redis
) -> list[Stage]:
    """Build the stages named ``module:function``, in order.

    Raises:
        InvalidSettingsError: a name does not resolve to a function that takes
            the settings and the client, or the function returns something
            that is not a stage. The message names ``CARTWHEEL_HOTPATH_STAGES``,
            where the names come from.
    """
    stages = []
    for spec, factory in zip(specs, resolve_stage_factories(specs), strict=True):
        stage = _call_factory(spec, factory, settings, client)
        missing = [
            name
            for name in ("name", "process", "close")
            if not hasattr(stage, name)
            or (name != "name" and not callable(getattr(stage, name)))
        ]
        if inspect.iscoroutine(stage):
            # Unclosed, it would make Python warn that it was never awaited.
            stage.close()
        if missing:
            raise _invalid_stage(
                spec,
                f"returned a {type(stage).__name__} without {', '.join(missing)}",
            )
        stages.append(stage)
    return stages


def resolve_stage_factories(specs: Sequence[str]) -> list[Any]:
    """Import the stage factories named ``module:function``, without calling them.

    Raises:
        InvalidSettingsError: a name does not resolve to an object; the
            message names ``CARTWHEEL_HOTPATH_STAGES``.
    """
    factories = []
    for spec in specs:
        module_name, _, function_name = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), function_name)
        except (ImportError, AttributeError, SyntaxError, ValueError) as exc:
            raise _invalid_stage(spec, f"cannot be loaded ({exc})") from exc
        factories.append(factory)
    return factories


def start_stages(stages: Sequence[Stage]) -> None:
    """Call ``start`` on each stage that has one (a ``StartedStage``), in order."""
    for stage in stages:
        start = getattr(stage, "start", None)
        if callable(start):
            start()


def _call_factory(spec: str, factory: Any, *arguments: Any) -> Any:
    """Call ``factory`` with ``arguments`` once its signature shows they fit."""
    try:
        signature = inspect.signature(factory)
    except TypeError as exc:
        raise _invalid_stage(spec, "is not callable") from exc
    except ValueError:
        # Some built-in callables (dict, max) have no signature to inspect, so
        # a TypeError of the call itself shows that the arguments do not fit.
        try:
            return factory(*arguments)
        except TypeError as exc:
            raise _invalid_stage(
                spec, f"cannot take the settings and a client ({exc})"
            ) from exc
    try:
        signature.bind(*arguments)
    except TypeError as exc:
        raise _invalid_stage(
            spec, f"cannot take the settings and a client ({exc})"
        ) from exc
    return factory(*arguments)


def _invalid_stage(spec: str, problem: str) -> InvalidSettingsError:
    return InvalidSettingsError(
        f"invalid setting CARTWHEEL_HOTPATH_STAGES: stage factory {spec!r} "
        f"{problem}; expected a JSON list of 'module:function' names of "
        "functions that take the hot-path settings and a redis.Redis client and "
        "return a stage with name, process and close"
    )


def redis_client(settings: HotPathSettings) -> redis.Redis:
    """Return a Redis client that fails fast instead of retrying on its own.

    Retries are the consumer's job: it backs off and replays the whole batch.
    """
    return redis.Redis.from_url(
        settings.redis.url.get_secret_value(),
        socket_timeout=10.0,
        socket_connect_timeout=2.0,
        retry=Retry(NoBackoff(), 0),
    )


def build_consumer(
    settings: HotPathSettings, stages: Sequence[Stage] | None = None
) -> HotPathConsumer:
    """Connect to Kafka and Redis and build the consumer.

    Args:
        settings: the hot path's settings.
        stages: the stages to run; by default those named in ``settings.stages``.
    """
    client = redis_client(settings)
    # An unknown stage name fails before the broker check. The factories run
    # after the topic and Redis checks, because the learner's factory creates
    # its checkpoint folder, which a failed start would leave behind. Their
    # settings were checked by load_checked_settings, and stages connect in
    # start().
    if stages is None:
        resolve_stage_factories(settings.stages)
    topics = settings.topics
    verify_topics(
        settings.kafka,
        [
            TopicSpec(name, topics.partitions)
            for name in (topics.events, topics.dead_letters, topics.training_examples)
        ],
    )
    verify_redis(settings.redis)
    if stages is None:
        stages = load_stages(settings.stages, settings, client)
    start_stages(stages)
    store = FeatureStore(client, settings.redis.key_prefix, settings.feature_config())
    consumer = Consumer(
        consumer_config(
            settings.kafka, settings.group_id, fetch_wait_ms=settings.fetch_wait_ms
        )
    )
    producer = Producer(producer_config(settings.kafka, is_polled_steadily=True))
    return HotPathConsumer(settings, consumer, producer, store, stages)


def run(settings: HotPathSettings) -> None:
    """Serve /metrics and consume until SIGINT or SIGTERM."""
    logger.info("hot path starting settings=%s", masked_settings(settings))
    serve_metrics(settings, settings.metrics_port, settings.metrics_host)
    hot_path = build_consumer(settings)
    tune_garbage_collection(settings.gc_threshold)

    stop_on_signals(hot_path.stop)
    hot_path.run()


class _StageNames(PlainIntegers, BaseSettings):
    """``CARTWHEEL_HOTPATH_STAGES`` alone, read when other hot-path settings fail."""

    model_config = SettingsConfigDict(env_prefix="CARTWHEEL_HOTPATH_", frozen=True)

    stages: StageNames = Field(
        default_factory=lambda: list(HotPathSettings.model_fields["stages"].default)
    )


def stage_settings_classes(specs: Sequence[str]) -> list[type[BaseSettings]]:
    """Return the settings classes that the named stage factories load.

    A factory's module declares them in a ``STAGE_SETTINGS`` mapping from
    function name to classes. A module that cannot be imported is skipped,
    because :func:`load_stages` reports it.
    """
    classes: list[type[BaseSettings]] = []
    for spec in specs:
        module_name, _, function_name = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except (ImportError, SyntaxError, ValueError):
            continue
        declared = getattr(module, "STAGE_SETTINGS", {}).get(function_name, ())
        classes.extend(item for item in declared if item not in classes)
    return classes


def load_checked_settings() -> HotPathSettings:
    """Load the hot path's settings and check those its stage factories load.

    Raises:
        InvalidSettingsError: a hot-path variable or a variable of a stage
            (``CARTWHEEL_LEARNER_*``, ``CARTWHEEL_SCORER_*``) is invalid; every
            invalid variable is listed.
    """
    problems: list[str] = []
    settings: HotPathSettings | None = None
    try:
        settings = load_settings(HotPathSettings)
        specs = settings.stages
    except InvalidSettingsError as exc:
        problems.append(str(exc))
        try:
            specs = load_settings(_StageNames).stages
        except InvalidSettingsError:
            specs = []
    for settings_class in stage_settings_classes(specs):
        try:
            load_settings(settings_class)
        except InvalidSettingsError as exc:
            problems.append(str(exc))
    if problems or settings is None:
        raise InvalidSettingsError(join_error_lines(problems))
    return settings


def main() -> None:
    """Load the settings from the environment and run the hot path."""
    settings = load_checked_settings()
    configure_logging(settings.log_level)
    run(settings)


if __name__ == "__main__":
    parse_service_arguments("services.hotpath", __doc__)
    sys.exit(run_entry_point("services.hotpath", main))
