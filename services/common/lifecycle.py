"""Process set-up shared by the long-running services: metrics, shutdown, memory."""

from __future__ import annotations

import errno
import gc
import logging
import os
import signal
import stat
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Literal

from prometheus_client import start_http_server
from pydantic_settings import BaseSettings

from services.common.errors import InvalidSettingsError

__all__ = [
    "check_directory_if_present",
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
        raise InvalidSettingsError(
            _invalid_directory_message(
                directory,
                variable,
                option,
                _non_directory_problem(directory) or exc.strerror or str(exc),
                "a directory this process can create and write",
            )
        ) from exc


def check_directory_if_present(
    directory: Path,
    variable: str,
    *,
    access: Literal["read", "read and write"] = "read",
) -> None:
    """Check that ``directory`` is a directory with ``access``, unless it is absent.

    This is for a command that only looks at what an earlier command left in
    the directory, such as pid files. A directory that does not exist yet
    contains nothing, so it passes.

    Raises:
        InvalidSettingsError: a file is at the path or above it, a folder
            above it cannot be searched, or the directory lacks ``access``.
            The message names ``variable``.
    """
    expected = (
        f"a directory this process can {access}, or a path where nothing exists yet"
    )
    try:
        mode = directory.stat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        problem = _non_directory_problem(directory) or exc.strerror or str(exc)
        raise InvalidSettingsError(
            _invalid_directory_message(directory, variable, None, problem, expected)
        ) from exc

    required_mode = (
        os.R_OK | os.X_OK if access == "read" else os.R_OK | os.W_OK | os.X_OK
    )
    if not stat.S_ISDIR(mode):
        problem = _NOT_A_DIRECTORY.format(where="it")
    elif not os.access(directory, required_mode):
        problem = os.strerror(errno.EACCES)
    else:
        return
    raise InvalidSettingsError(
        _invalid_directory_message(directory, variable, None, problem, expected)
    )


_NOT_A_DIRECTORY = "{where} is a file, not a directory"


def _non_directory_problem(directory: Path) -> str | None:
    """Describe the file or dangling link at ``directory`` or above it, if any.

    The system reports these as "File exists" or "Not a directory", which
    names neither the path at fault nor what is there. The nearest path that
    exists decides: a directory there means the problem lies elsewhere.
    """
    for path in (directory, *directory.parents):
        try:
            mode = path.lstat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:
            return None
        where = "it" if path == directory else f"{str(path)!r}, above it,"
        if stat.S_ISLNK(mode):
            try:
                mode = path.stat().st_mode
            except FileNotFoundError:
                target = os.readlink(path)
                return f"{where} is a symbolic link to a missing target, {target!r}"
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    return f"{where} is a symbolic link in a loop of links"
                return None
        if stat.S_ISDIR(mode):
            return None
        return _NOT_A_DIRECTORY.format(where=where)
    return None


def _invalid_directory_message(
    directory: Path, variable: str, option: str | None, problem: str, expected: str
) -> str:
    if option is None:
        source = f"setting {variable}={str(directory)!r}"
    else:
        source = f"option {option}={str(directory)!r} (in place of {variable})"
    return f"invalid {source}: {problem}; expected {expected}"
