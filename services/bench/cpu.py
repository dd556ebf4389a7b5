"""CPU time of the processes that share a benchmark's machine.

A whole-path benchmark on a small machine measures every process at once:
the services under test, redis-server, the broker and the load generator.
Their CPU seconds over a step show where the cores went, which a rate alone
does not. Linux reports them in ``/proc/<pid>/stat``. On other systems
:func:`process_cpu_seconds` raises :class:`CpuUnavailableError`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuAccount", "CpuUnavailableError", "process_cpu_seconds"]

_PROC = Path("/proc")
# Fields 14 and 15 of /proc/<pid>/stat (utime, stime), counted after the
# command name, which is the only field that may contain spaces.
_UTIME_AFTER_NAME = 11
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class CpuUnavailableError(RuntimeError):
    """The CPU time of a process cannot be read on this system."""


def process_cpu_seconds(pid: int) -> float:
    """Return the user and system CPU seconds a process has used, all threads.

    Raises:
        CpuUnavailableError: the system has no ``/proc``, or the process has exited.
    """
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except FileNotFoundError as exc:
        if not _PROC.is_dir():
            raise CpuUnavailableError("no /proc: CPU accounting needs Linux") from exc
        raise CpuUnavailableError(f"process {pid} has exited") from exc
    fields = stat[stat.rindex(")") + 2 :].split()
    user, system = fields[_UTIME_AFTER_NAME], fields[_UTIME_AFTER_NAME + 1]
    return (int(user) + int(system)) / _TICKS_PER_SECOND


@dataclass(frozen=True)
class CpuAccount:
    """CPU seconds per group of processes over one step, and the step's wall time.

    Attributes:
        seconds: CPU seconds per group name, in the order the groups were given.
        wall_seconds: the wall-clock length of the step.
    """

    seconds: Mapping[str, float]
    wall_seconds: float

    @classmethod
    def start(cls, groups: Mapping[str, Sequence[int]]) -> _Running:
        """Start counting the CPU of each group's processes.

        ``groups`` maps a name to process ids. The id ``0`` is this process,
        read with :func:`time.process_time`.
        """
        return _Running(dict(groups))

    @property
    def cores_busy(self) -> float:
        """Return the mean number of cores the groups kept busy together."""
        if self.wall_seconds <= 0:
            return 0.0
        return sum(self.seconds.values()) / self.wall_seconds

    def per_event_us(self, events: int) -> dict[str, float]:
        """Return each group's CPU microseconds per event."""
        return {name: value / events * 1e6 for name, value in self.seconds.items()}


class _Running:
    """A CPU account in progress; :meth:`stop` returns the finished account."""

    def __init__(self, groups: dict[str, Sequence[int]]) -> None:
        self._groups = groups
        self._started = time.monotonic()
        self._before = self._read()

    def stop(self) -> CpuAccount:
        after = self._read()
        return CpuAccount(
            {name: after[name] - self._before[name] for name in self._groups},
            time.monotonic() - self._started,
        )

    def _read(self) -> dict[str, float]:
        return {
            name: sum(_cpu_seconds(pid) for pid in pids)
            for name, pids in self._groups.items()
        }


def _cpu_seconds(pid: int) -> float:
    return time.process_time() if pid == 0 else process_cpu_seconds(pid)
