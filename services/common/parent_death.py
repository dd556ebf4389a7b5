"""End child processes when the process that started them dies, even by SIGKILL.

On Linux a child can ask the kernel for a signal when its parent dies, with
``prctl(PR_SET_PDEATHSIG)``. The request survives ``exec``, so it works for
any program, Python or not. The kernel sends the signal when the *thread*
that forked the child exits, not only when the whole process does. Start
such children from the main thread, or from a thread that lives as long as
the process. On other systems nothing is requested, and a child outlives a
parent killed with SIGKILL (L-3).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

__all__ = ["signal_on_parent_death"]

# From <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1


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
        if prctl(_PR_SET_PDEATHSIG, int(signal_number), 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(
                errno, f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(errno)}"
            )
        if os.getppid() != parent_pid:
            os._exit(1)

    return request_signal
