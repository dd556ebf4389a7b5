from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from services.common.interrupts import (
    Terminated,
    record_stop_signal,
    stop_signals_as_interrupts,
)

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@pytest.fixture(autouse=True)
def _restore_handlers() -> Iterator[None]:
    """Give pytest its own SIGINT and SIGTERM handlers back after each test."""
    saved = {signum: signal.getsignal(signum) for signum in _STOP_SIGNALS}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_repeated_signal_during_stop_is_ignored() -> None:
    with pytest.raises(Terminated), stop_signals_as_interrupts():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        finally:
            # The cleanup of a stopping command, which a second signal would
            # otherwise cut short.
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)

    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN


def test_signal_after_recorded_stop_is_ignored() -> None:
    with stop_signals_as_interrupts():
        record_stop_signal(signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)

    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN


def test_handlers_restored_without_stop_signal() -> None:
    before = signal.getsignal(signal.SIGTERM)

    with stop_signals_as_interrupts():
        pass

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigint_raises_keyboard_interrupt() -> None:
    with pytest.raises(KeyboardInterrupt) as caught, stop_signals_as_interrupts():
        os.kill(os.getpid(), signal.SIGINT)

    assert type(caught.value) is KeyboardInterrupt
