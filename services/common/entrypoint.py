"""Exit statuses and one-line reports for errors that the operator must fix.

The ``cartwheel`` command and every ``python -m services.<name>`` entry point
report an invalid setting, an unreachable broker or Redis, a missing topic, a
Kafka client failure and a Redis connection failure the same way: one line
``<program>: error: <message>`` on stderr, no traceback, and exit status 2.
The messages already name the variable, the value and the expected form, so a
traceback would only hide them. Any other exception still ends with a
traceback, since it is a bug.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence

import redis
from confluent_kafka import KafkaException

from services.common.errors import (
    InfrastructureError,
    InvalidSettingsError,
    TopicMissingError,
)
from services.common.interrupts import honour_interrupts

__all__ = [
    "ENVIRONMENT_ERRORS",
    "ENVIRONMENT_ERROR_STATUS",
    "parse_service_arguments",
    "report_environment_error",
    "run_entry_point",
    "write_error",
]

# Errors that the settings, the broker, Redis or the topics cause. The operator
# fixes them outside the code.
ENVIRONMENT_ERRORS: tuple[type[Exception], ...] = (
    InvalidSettingsError,
    InfrastructureError,
    TopicMissingError,
    KafkaException,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)

ENVIRONMENT_ERROR_STATUS = 2


def write_error(program: str, message: str) -> None:
    """Write ``<program>: error: <message>`` as one line to stderr."""
    sys.stderr.write(f"{program}: error: {message}\n")


def report_environment_error(program: str, exc: Exception) -> int:
    """Write one of :data:`ENVIRONMENT_ERRORS` as one line and return status 2.

    A :class:`KafkaException` carries only librdkafka's error, so its message
    follows ``the Kafka cluster failed:``. A Redis connection error names no
    setting, so its message is followed by the variable to check.
    """
    if isinstance(exc, KafkaException):
        write_error(program, f"the Kafka cluster failed: {exc}")
    elif isinstance(exc, redis.exceptions.RedisError):
        write_error(
            program,
            f"Redis failed: {str(exc).rstrip('.')}; check CARTWHEEL_REDIS_URL, "
            "and that its server runs ('cartwheel infra status' for the local one)",
        )
    else:
        write_error(program, str(exc))
    return ENVIRONMENT_ERROR_STATUS


def run_entry_point(program: str, main: Callable[[], object]) -> int:
    """Run a service's ``main`` and return the process's exit status.

    Args:
        program: the name that starts the error line, such as
            ``services.hotpath``.
        main: loads the settings and runs the service until it stops.

    Returns:
        0 when ``main`` returns, or 2 after writing one of
        :data:`ENVIRONMENT_ERRORS` as one line. Other exceptions, and
        KeyboardInterrupt, propagate unchanged.
    """
    # LIMITATION(L-92): a python -m entry point reaches this line only after
    # importing its modules, so a SIGINT during those imports is not handled.
    honour_interrupts()
    try:
        main()
    except ENVIRONMENT_ERRORS as exc:
        return report_environment_error(program, exc)
    return 0


def parse_service_arguments(
    program: str, docstring: str | None, arguments: Sequence[str] | None = None
) -> None:
    """Print the usage for ``--help`` and reject any other argument.

    A service entry point reads every setting from the environment, so an
    argument is a mistake. Without this check ``--help`` would start the
    service.

    Args:
        program: the module, such as ``services.hotpath``.
        docstring: the module's docstring; its first paragraph describes it.
        arguments: the command-line arguments; ``sys.argv[1:]`` by default.

    Raises:
        SystemExit: with status 0 after ``--help``, 2 after any other argument.
    """
    summary = (docstring or "").split("\n\n")[0].replace("``", "").strip()
    # Sphinx roles such as :class:`Name` read as their name alone.
    summary = re.sub(r":\w+:`([^`]+)`", r"\1", summary)
    parser = argparse.ArgumentParser(
        prog=f"python -m {program}",
        description=summary,
        epilog="Every setting is an environment variable (CARTWHEEL_*); "
        "'cartwheel config' lists them with their defaults.",
    )
    parser.parse_args(arguments)
