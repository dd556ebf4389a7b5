"""Process set-up shared by the long-running services: metrics, shutdown, memory."""

from __future__ import annotations

import gc
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from prometheus_client import start_http_server
from pydantic_settings import BaseSettings

from services.common.errors import InvalidSettingsError

__all__ = [
    "ensure_writable_directory",
    "serve_metrics",
    "stop_on_signals",
    "tune_garbage_collection",
]

logger = logging.getLogger(__name__)


def serve_metrics(settings: BaseSettings, port: int, host: str) -> None:
    """Serve Prometheus metrics on ``host:port``, or none when the port is 0.

    Raises:
        InvalidSettingsError: when the address is taken or invalid. The
            message names the service's ``METRICS_HOST`` and ``METRICS_PORT``
            variables.
    """
    if not port:
        return
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        prefix = str(settings.model_config.get("env_prefix", ""))
        raise InvalidSettingsError(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; set "
            f"{prefix}METRICS_HOST to an address of this host and "
            f"{prefix}METRICS_PORT to a free port (another process, perhaps a "
            "second instance on this host, may be using it) or to 0 for no metrics"
        ) from exc
    logger.info("metrics served address=%s:%s", host, port)


def stop_on_signals(stop: Callable[[], None]) -> None:
    """Call ``stop`` on SIGINT or SIGTERM, logging which signal arrived.

    ``stop`` should only ask the service's loop to finish, because it runs in
    the signal handler on the main thread.
    """

    def _handle(signum: int, frame: FrameType | None) -> None:
        logger.info("stop requested signal=%s", signal.Signals(signum).name)
        stop()

    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)


def tune_garbage_collection(threshold: int) -> None:
    """Freeze the objects built so far and collect the young generation less often.

    Call it once per process, after start-up and before the service loop. The
    models, caches and clients built at start-up then leave the collector's
    work, and a stage that allocates many short-lived objects per event runs
    fewer collections. A ``threshold`` of 0 changes nothing.
    """
    if threshold <= 0:
        return
    gc.freeze()
    gc.set_threshold(threshold)
    logger.info(
        "garbage collection tuned threshold=%d frozen_objects=%d",
        threshold,
        gc.get_freeze_count(),
    )


def ensure_writable_directory(
    directory: Path, variable: str, *, option: str | None = None
) -> None:
    """Create ``directory`` and write a file in it, so a bad path stops the start.

    Pass ``option`` when a command-line option, given in place of
    ``variable``, chose the path.

    Raises:
        InvalidSettingsError: the directory cannot be created or written; the
            message names ``variable``, the setting that chose the path, or
            ``option`` and ``variable``.
    """
    probe = directory / f".write-check-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        if option is None:
            source = f"setting {variable}={str(directory)!r}"
        else:
            source = f"option {option}={str(directory)!r} (in place of {variable})"
        raise InvalidSettingsError(
            f"invalid {source}: {exc.strerror or exc}; expected a directory "
            "this process can create and write"
        ) from exc
