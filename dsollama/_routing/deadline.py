"""A reschedulable deadline for the task that reads a backend's stream.

`asyncio.timeout()` needs Python 3.11 and a fresh `wait_for` per chunk creates a task per
chunk; this keeps one timer and only moves a deadline per chunk. When it fires it cancels the reading
task; the reader catches the cancellation and, seeing `fired`, turns it into a
`BackendTimeoutError` for the phase that was running (first token, gap, total).
"""

from __future__ import annotations

import asyncio
import sys

__all__ = ["Watchdog"]


class Watchdog:
    def __init__(self) -> None:
        self._task = asyncio.current_task()
        self._loop = asyncio.get_running_loop()
        self._time = self._loop.time
        self._handle: asyncio.TimerHandle | None = None
        self._when = 0.0
        "When the timer fires (kept here: this is read for every chunk)."
        self.phase = ""
        self.seconds = 0.0
        self._deadline = 0.0
        self.fired: str | None = None

    def arm(self, seconds: float, phase: str) -> None:
        """(Re)set the deadline to ``seconds`` from now.

        Called for every chunk, so it only moves a number: the one timer is rescheduled
        when it fires early (the deadline moved on) or when the deadline moves closer.
        """
        self.phase, self.seconds = phase, seconds
        deadline = self._deadline = self._time() + (seconds if seconds > 0 else 0.0)
        if self._handle is None or self._when > deadline:
            if self._handle is not None:
                self._handle.cancel()
            self._handle = self._loop.call_at(deadline, self._fire)
            self._when = deadline

    def disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        if self._time() < self._deadline:  # progress since: wait for the new deadline
            self._handle = self._loop.call_at(self._deadline, self._fire)
            self._when = self._deadline
            return
        if self._task is not None and not self._task.done():
            self.fired = self.phase
            self._task.cancel()

    def absorb(self) -> bool:
        """In an ``except CancelledError``: True when the cancellation was ours to absorb.

        False when someone else also cancelled the task (the caller went away), in which
        case the CancelledError must propagate.
        """
        if self.fired is None:
            return False
        if sys.version_info >= (3, 11) and self._task is not None:
            if self._task.uncancel() > 0:
                return False
        return True
