"""Rendering `ProgressEvent`s: rich bars on a terminal, plain lines everywhere else.

Plain lines are for logs and pipes: one line when a layer starts, one at each quarter,
one when it is complete — never the daemon's 60 ms heartbeat. Both renderers show bytes,
speed and time left for layer downloads and blob uploads. Warnings go to stderr.
Status texts and names come from the daemon and the registry: both renderers show them
through `printable` (control characters escaped, length bounded).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TextIO

from dsollama._text_safety import printable

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from dsollama._provision import ProgressEvent

__all__ = [
    "PlainRenderer",
    "Renderer",
    "RichRenderer",
    "format_duration",
    "make_renderer",
]

_BYTE_KINDS = {"layer", "upload-blob"}
_QUARTERS = (0.25, 0.5, 0.75)


class Renderer(Protocol):
    def handle(self, event: ProgressEvent) -> None: ...

    def close(self) -> None: ...


def format_duration(seconds: float) -> str:
    """Compact time left: '45s', '3m07s', '2h05m'.

    >>> format_duration(45.2), format_duration(187), format_duration(7500)
    ('45s', '3m07s', '2h05m')
    """
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _label(event: ProgressEvent) -> str:
    """'pulling 96c415656d37' for layers; the daemon's own text otherwise."""
    if event.kind == "layer" and event.digest and not event.message.startswith("pulling "):
        return "pulling " + printable(event.digest.removeprefix("sha256:")[:12])
    return printable(event.message)


@dataclass
class _Transfer:
    started: float
    first_completed: int
    next_quarter: int = 0


class PlainRenderer:
    """Lines for logs and pipes; deterministic given the clock."""

    def __init__(
        self,
        out: TextIO | None = None,
        err: TextIO | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._out = out
        self._err = err
        self._clock = clock
        self._transfers: dict[tuple[str, str], _Transfer] = {}

    def _write(self, text: str, *, err: bool = False) -> None:
        stream = (self._err or sys.stderr) if err else (self._out or sys.stdout)
        stream.write(text + "\n")
        stream.flush()

    def handle(self, event: ProgressEvent) -> None:
        message = printable(event.message)
        if event.kind == "warning":
            self._write(f"warning: {message}", err=True)
        elif event.kind in _BYTE_KINDS and event.total:
            self._transfer(event)
        elif event.kind in {"check", "summary", "up-to-date", "done"} or not event.model:
            self._write(message)
        elif event.kind == "plan":
            self._write(f"plan: {message}")
        else:
            self._write(f"{printable(event.model)}: {message}")

    def _transfer(self, event: ProgressEvent) -> None:
        from dsollama._hardware import format_bytes

        assert event.total is not None
        key = (event.model, event.digest or event.message)
        done = event.completed or 0
        now = self._clock()
        state = self._transfers.get(key)
        label = f"{printable(event.model)}: {_label(event)}"
        if state is None:
            state = self._transfers[key] = _Transfer(now, done)
            if done >= event.total:
                self._write(f"{label}  {format_bytes(event.total)}  already here")
                state.next_quarter = len(_QUARTERS) + 1
                return
            self._write(f"{label}  {format_bytes(event.total)}")
            while (
                state.next_quarter < len(_QUARTERS)
                and done / event.total >= _QUARTERS[state.next_quarter]
            ):
                state.next_quarter += 1
            return
        if state.next_quarter > len(_QUARTERS):
            return  # already reported complete
        fraction = done / event.total
        crossed = False
        while state.next_quarter < len(_QUARTERS) and fraction >= _QUARTERS[state.next_quarter]:
            state.next_quarter += 1
            crossed = True
        complete = done >= event.total
        if not crossed and not complete:
            return
        elapsed = now - state.started
        moved = done - state.first_completed
        speed = moved / elapsed if elapsed > 0 and moved > 0 else None
        parts = [
            label,
            f"{format_bytes(done)} / {format_bytes(event.total)}",
            f"{int(fraction * 100)}%",  # floor: 99.9 % is not done
        ]
        if speed:
            parts.append(f"{format_bytes(speed)}/s")
            if not complete:
                parts.append(f"ETA {format_duration((event.total - done) / speed)}")
        if complete:
            parts.append("done")
            state.next_quarter = len(_QUARTERS) + 1
        self._write("  ".join(parts))

    def close(self) -> None:
        self._transfers.clear()


class RichRenderer:
    """rich progress bars (bytes, speed, time left) for each layer and upload."""

    def __init__(self, console: Console | None = None, err_console: Console | None = None):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.console = console or Console()
        self._err = err_console or Console(stderr=True)
        self._progress: Progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=False),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._tasks: dict[tuple[str, str], TaskID] = {}
        self._progress.start()

    def handle(self, event: ProgressEvent) -> None:
        from rich.markup import escape
        from rich.text import Text

        message = printable(event.message)
        if event.kind == "warning":
            self._err.print(Text.assemble(("warning: ", "yellow"), message))
            return
        if event.kind in _BYTE_KINDS and event.total:
            key = (event.model, event.digest or event.message)
            task = self._tasks.get(key)
            if task is None:
                # The description column renders markup: escape names with brackets.
                description = escape(f"{printable(event.model)} {_label(event)}")
                task = self._progress.add_task(description, total=event.total)
                self._tasks[key] = task
            self._progress.update(task, completed=event.completed or 0, total=event.total)
            return
        style = {"summary": "bold", "done": "green", "up-to-date": "green", "check": "dim"}
        text = message
        if event.kind == "plan":
            text = "plan: " + text
        elif event.model and event.kind not in style:
            text = f"{printable(event.model)}: {text}"
        # A styled Text, not print(style=...): that style would also paint the live bars.
        self._progress.console.print(Text(text, style=style.get(event.kind, "")))

    def close(self) -> None:
        self._progress.stop()


def make_renderer(*, tty: bool | None = None) -> Renderer:
    """A rich renderer on a terminal, plain lines otherwise."""
    if tty is None:
        tty = sys.stdout.isatty()
    return RichRenderer() if tty else PlainRenderer()
