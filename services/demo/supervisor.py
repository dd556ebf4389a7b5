"""Run Cartwheel services as child processes and stop them all, also on Ctrl-C.

On Linux the children also get SIGTERM when the supervising process dies,
even by SIGKILL, so none keeps running without it.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from services.common.errors import InfrastructureError
from services.common.parent_death import signal_on_parent_death
from services.common.settings import child_environment

__all__ = ["ServiceProcess", "Supervisor"]

logger = logging.getLogger(__name__)


@dataclass
class ServiceProcess:
    """One child process running ``python -m <module>``, with its log file."""

    name: str
    module: str
    log_file: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check(self) -> None:
        """Raise when the process has exited, pointing at its log."""
        if self.process is not None and self.process.poll() is not None:
            raise InfrastructureError(
                f"service {self.name} exited with code {self.process.returncode}; "
                f"see {self.log_file}"
            )


class Supervisor:
    """Start services with a shared environment and stop every one on exit.

    Used as a context manager: leaving the block, normally or through an
    exception or Ctrl-C, sends SIGTERM to each child, waits, then SIGKILLs
    whatever is left. On Linux each child gets SIGTERM when the thread that
    called :meth:`start` exits, so call it from the main thread.
    """

    def __init__(self, log_dir: Path, environment: Mapping[str, str]) -> None:
        self._log_dir = log_dir
        self._environment = child_environment(environment)
        self._services: list[ServiceProcess] = []

    def start(self, name: str, module: str, *arguments: str) -> ServiceProcess:
        """Start ``python -m module arguments`` with its output in ``<name>.log``."""
        self._log_dir.mkdir(parents=True, exist_ok=True)
        service = ServiceProcess(name, module, self._log_dir / f"{name}.log")
        with service.log_file.open("ab") as log:
            service.process = subprocess.Popen(
                [sys.executable, "-m", module, *arguments],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._environment,
                preexec_fn=signal_on_parent_death(signal.SIGTERM),
            )
        logger.info(
            "service started name=%s pid=%s log=%s",
            name,
            service.process.pid,
            service.log_file,
        )
        self._services.append(service)
        return service

    def check(self) -> None:
        """Raise if any service has died."""
        for service in self._services:
            service.check()

    def stop_all(self, timeout_seconds: float = 15.0) -> None:
        for service in reversed(self._services):
            if service.is_running() and service.process is not None:
                service.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_seconds
        for service in reversed(self._services):
            if service.process is None:
                continue
            remaining = max(0.1, deadline - time.monotonic())
            try:
                service.process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                logger.warning("service ignored SIGTERM, killing name=%s", service.name)
                service.process.kill()
                service.process.wait()
            logger.info(
                "service stopped name=%s code=%s",
                service.name,
                service.process.returncode,
            )
        self._services.clear()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_all()
