"""Start and run the feedback worker, from settings to a stopped Faust worker."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

from schemas.recommendations import Surface
from services.common.kafka import TopicSpec, verify_topics
from services.common.lifecycle import ensure_writable_directory, serve_metrics
from services.common.logging import configure_logging
from services.common.redis_check import verify_redis
from services.common.settings import load_settings, masked_settings, secret_values
from services.feedback.app import create_app
from services.feedback.settings import FeedbackSettings
from services.feedback.worker import (
    FeedbackWorker,
    StartUpStopped,
    StopDeadline,
    StopSignals,
    run_start_up,
)

__all__ = ["main", "run"]

logger = logging.getLogger(__name__)


def run(
    settings: FeedbackSettings,
    received: Callable[[], signal.Signals | None] = lambda: None,
) -> None:
    """Check the topics, serve /metrics and run the Faust worker until stopped.

    Args:
        settings: the worker's settings.
        received: returns the stop signal that arrived before the worker's
            own handler was installed, while the process loaded its modules.
            The start-up then stops at once.

    Raises:
        InvalidSettingsError: ``CARTWHEEL_FEEDBACK_DATA_DIR`` cannot be
            created or written.
        TopicMissingError: a topic the app reads is missing or has another
            partition count than ``CARTWHEEL_TOPIC_PARTITIONS``.
        SystemExit: when the worker ends, with status 0 after a clean stop
            and 1 after a crash. A stop on SIGTERM or SIGINT that takes longer
            than ``CARTWHEEL_FEEDBACK_STOP_TIMEOUT_SECONDS`` ends the process
            with status 2 instead (see :mod:`services.feedback.worker`).

    SIGTERM or SIGINT before or while the topics and Redis are checked makes
    it return at once, without starting the worker. Called from the main
    thread, it handles both signals from then until the process exits.
    """
    stop_deadline = StopDeadline(settings.stop_timeout_seconds)
    stop_signals = StopSignals(stop_deadline)
    stop_signals.install(received)
    logger.info("feedback app starting settings=%s", masked_settings(settings))
    ensure_writable_directory(settings.data_dir, "CARTWHEEL_FEEDBACK_DATA_DIR")
    try:
        run_start_up(lambda: _check_dependencies(settings), stop_signals)
    except StartUpStopped as stopped:
        logger.info(
            "feedback app stopped during start-up reason=%s app_id=%s",
            stopped.reason,
            settings.app_id,
        )
        return

    serve_metrics(settings, settings.metrics_port, settings.metrics_host)
    app, _ = create_app(settings)
    # override_logging=False keeps the handlers configure_logging installed,
    # and redirect_stdouts=False keeps stderr a plain stream for them.
    worker = FeedbackWorker(
        app,
        stop_deadline=stop_deadline,
        stop_signals=stop_signals,
        loglevel=settings.log_level,
        override_logging=False,
        redirect_stdouts=False,
        quiet=True,
    )
    # The start-up spinner writes terminal escape codes into the log.
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_request:
        # mode-streaming 0.7's Worker ends every run with SystemExit: status
        # 0 after a stop on SIGTERM or SIGINT, 1 after a crash it has logged.
        if exit_request.code in (0, None):
            logger.info("feedback app stopped app_id=%s", settings.app_id)
        raise


def _check_dependencies(settings: FeedbackSettings) -> None:
    """Check that the topics the app reads exist and that Redis responds."""
    topics = settings.topics
    names = [topics.events]
    names += [topics.recommendations(surface.value) for surface in Surface]
    verify_topics(
        settings.kafka, [TopicSpec(name, topics.partitions) for name in names]
    )
    verify_redis(settings.redis)


def main(received: Callable[[], signal.Signals | None] = lambda: None) -> None:
    """Load the settings from the environment and run the worker.

    Args:
        received: returns the stop signal that arrived since the process
            started, if any.
    """
    settings = load_settings(FeedbackSettings)
    configure_logging(settings.log_level, secrets=secret_values(settings))
    run(settings, received)
