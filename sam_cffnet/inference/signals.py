"""Stopping a mapping run cleanly: SIGTERM (``timeout``, SLURM, ``kill``) and SIGINT (Ctrl-C).

While a run is under way, :class:`StopSignals` turns the first SIGTERM or SIGINT into a request: the run finishes the
block it is computing, writes it, and stops with :class:`MappingStopped`; ``python -m sam_cffnet map`` prints one
line saying to rerun the same command to resume, and exits with 143 (SIGTERM) or 130 (SIGINT), 128 + the signal
number as shells do. A second signal stops at the next chunk of windows without finishing the block (the
finished blocks are kept either way). DataLoader workers ignore both signals: the main process stops them.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any, ClassVar

__all__ = ['MappingStopped', 'StopSignals', 'ignore_stop_signals']

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class MappingStopped(RuntimeError):
    """A mapping run stopped on a signal; its finished blocks are kept (rerun the same call to resume).

    Args:
        signum: the signal.
        message: what happened and what to do.
    """

    def __init__(self, signum: int, message: str = '') -> None:
        self.signum = int(signum)
        name = signal.Signals(self.signum).name
        super().__init__(message or f'stopped by {name}; rerun the same command to resume')

    @property
    def exit_code(self) -> int:
        """``128 + signal``: 143 for SIGTERM, 130 for SIGINT."""
        return 128 + self.signum


class StopSignals:
    """A context manager that turns SIGTERM / SIGINT into a stop request (main thread only; nested uses share one).

    Attributes:
        signum: the first signal received, or ``None``.
        count: signals received.
    """

    active: ClassVar[StopSignals | None] = None

    def __init__(self) -> None:
        self.signum: int | None = None
        self.count = 0
        self._previous: dict[int, Any] = {}
        self._installed = False

    def __enter__(self) -> StopSignals:
        if StopSignals.active is not None:
            return StopSignals.active
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
            self._installed = True
            StopSignals.active = self
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self._installed:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            self._installed = False
            StopSignals.active = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.signum is None:
            self.signum = signum

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.signum is not None

    @classmethod
    def current(cls) -> StopSignals | None:
        """The active instance (``None`` outside a run, or off the main thread)."""
        return cls.active


def ignore_stop_signals(worker_id: int = 0) -> None:
    """``worker_init_fn`` of the DataLoader workers: SIGTERM and SIGINT are for the main process, which stops them."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
