"""Graceful stop on SIGINT (Ctrl-C) and SIGTERM: the first signal only records a request, which the training
callback turns into "stop after this env step, save a checkpoint, exit 130/143"; a second signal aborts at
once with KeyboardInterrupt (checkpoints are written atomically, so an abort never leaves a torn file)."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

__all__ = ["GracefulStop", "exit_code"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(signum: int) -> int:
    """The shell's exit status of a process ended by signal ``signum``: 128 + signum (130, 143)."""
    return 128 + int(signum)


class GracefulStop:
    """Context manager recording SIGINT/SIGTERM instead of dying; :attr:`requested` is the signal number.

    Handlers are installed only in the main thread (Python's rule) and when ``enabled``; the previous handlers
    come back on exit. ``event`` (anything with ``is_set()``, e.g. a ``multiprocessing.Event`` shared by a
    sweep's workers) counts as a SIGINT request when set.
    """

    def __init__(self, enabled: bool = True, event: Any = None) -> None:
        self.enabled = enabled
        self.event = event
        self._signal: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> int | None:
        """The signal that asked to stop, or None."""
        if self._signal is None and self.event is not None and self.event.is_set():
            return int(signal.SIGINT)
        return self._signal

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._signal is not None:
            raise KeyboardInterrupt(f"second signal {signal.Signals(signum).name}: aborting without saving")
        self._signal = signum

    def __enter__(self) -> GracefulStop:
        if self.enabled and threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
