"""End child processes when the process that started them dies, even by SIGKILL.

On Linux a child can ask the kernel for a signal when its parent dies, with
``prctl(PR_SET_PDEATHSIG)``. The request survives ``exec``, so it works for
any program, Python or not. The kernel sends the signal when the *thread*
that forked the child exits, not only when the whole process does. Start
such children from the main thread, or from a thread that lives as long as
the process. On other systems nothing is requested, and a child outlives a
parent killed with SIGKILL (L-3).

``subprocess`` children make the request through :func:`signal_on_parent_death`
as their ``preexec_fn``. A ``multiprocessing`` child has no ``preexec_fn``, so
it makes the request itself, first thing: :func:`start_tied_process` does that for
a process, and :func:`request_signal_on_parent_death` is the initializer for
the workers of a process pool.

The signal does not say that it came from the parent's death, so a child that
wants to report it checks with :func:`has_exited` whether the parent it
started with is gone.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Sequence
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any

__all__ = [
    "has_exited",
    "has_parent_death_signal",
    "request_signal_on_parent_death",
    "signal_on_parent_death",
    "start_tied_process",
]

# From <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1
_PR_GET_PDEATHSIG = 2


def signal_on_parent_death(
    signal_number: signal.Signals,
) -> Callable[[], None] | None:
    """Return a ``preexec_fn`` that signals the child when the caller's thread exits.

    Pass it to ``subprocess.Popen``. The child gets ``signal_number`` when the
    calling thread of this process exits, however it exits. A child whose
    parent died between fork and the request exits at once, because no
    signal would come for it.

    Args:
        signal_number: the signal the child receives; pick the one that stops
            the program cleanly (SIGINT for Tansu, SIGTERM for the services).

    Returns:
        The function to pass as ``preexec_fn``, or None where the system has
        no such request (anything but Linux).
    """
    if not sys.platform.startswith("linux"):
        return None
    # Looked up before the fork, so the child only makes the call.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent_pid = os.getpid()

    def request_signal() -> None:
        _request_signal(prctl, signal_number, parent_pid)

    return request_signal


def request_signal_on_parent_death(signal_number: signal.Signals) -> None:
    """Ask for ``signal_number`` when the thread that started this process exits.

    Call it first thing in a ``multiprocessing`` child, for example as the
    ``initializer`` of a ``ProcessPoolExecutor``. Like the ``preexec_fn`` of
    :func:`signal_on_parent_death`, it exits at once when the parent has
    already died. Outside Linux it does nothing.

    Raises:
        RuntimeError: the caller is not a ``multiprocessing`` child, so it
            has no parent to watch.
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        raise RuntimeError(
            "request_signal_on_parent_death() was called outside a "
            "multiprocessing child; start other children with "
            "signal_on_parent_death() as preexec_fn"
        )
    if not sys.platform.startswith("linux"):
        return
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    _request_signal(prctl, signal_number, parent.pid)


def start_tied_process(
    context: SpawnContext,
    target: Callable[..., object],
    args: Sequence[Any],
    signal_number: signal.Signals,
) -> SpawnProcess:
    """Start ``target(*args)`` in a process that gets a signal when the caller dies.

    The signal comes when the calling thread exits, as for
    :func:`signal_on_parent_death`, so call this from the main thread.

    Args:
        context: the spawn context whose queues and events ``args`` carry.
        target: a function the child can import by name.
        args: the arguments of ``target``; they must pickle.
        signal_number: the signal the child receives when the caller's
            thread exits; SIGKILL for a child that ignores SIGTERM.

    Returns:
        The started process.
    """
    process = context.Process(
        target=_run_after_request, args=(signal_number, target, tuple(args))
    )
    process.start()
    return process


def has_exited(pid: int) -> bool:
    """Return True when process ``pid`` has exited or its main thread has.

    A multithreaded process killed with SIGKILL may lose its main thread
    before the others, and a child that asked for a signal when that thread
    exits gets it while the other threads still run. The process is then
    still the child's parent, but its main thread is a zombie, which counts
    as exited here. So does a process that has exited but is not reaped yet.

    Returns:
        True for a process that is gone or whose main thread is a zombie;
        False for a running one, and on systems other than Linux, which have
        no ``/proc`` to tell.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    # The command name, in parentheses, may itself contain ") ".
    return fields.rpartition(") ")[2].startswith("Z")


def has_parent_death_signal() -> bool:
    """Return True when this process asked for a signal on its parent's death.

    A process started by hand, from a shell, has no such request, so a signal
    it gets is never its parent's death, even after that shell has exited.

    Returns:
        True when a parent-death signal is set; False when none is, and on
        systems other than Linux.
    """
    if not sys.platform.startswith("linux"):
        return False
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    requested = ctypes.c_int(0)
    if prctl(_PR_GET_PDEATHSIG, ctypes.byref(requested), 0, 0, 0) != 0:
        return False
    return requested.value != 0


def _run_after_request(
    signal_number: signal.Signals,
    target: Callable[..., object],
    args: tuple[Any, ...],
) -> None:
    request_signal_on_parent_death(signal_number)
    target(*args)


def _request_signal(
    prctl: Callable[..., int], signal_number: signal.Signals, parent_pid: int
) -> None:
    if prctl(_PR_SET_PDEATHSIG, int(signal_number), 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(errno)}")
    # The parent may have died before the request, and then no signal comes.
    if os.getppid() != parent_pid:
        os._exit(1)
