"""Showing a burst as it happens: a live rich table on a terminal, plain lines elsewhere.

Plain lines are for CI logs and pipes: one line per finished request (in the order they
finish), never a redraw.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TextIO

from .burst import Event

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

__all__ = ["LiveView", "PlainView", "RichView"]


class LiveView(Protocol):
    def __call__(self, event: Event) -> None: ...

    def close(self) -> None: ...


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


class PlainView:
    """One line per finished request."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out
        self._sent: dict[int, float] = {}
        self._ttft: dict[int, float] = {}

    def __call__(self, event: Event) -> None:
        if event.kind == "sent":
            self._sent[event.index] = event.at
            return
        if event.kind == "first-token":
            self._ttft[event.index] = event.at
            return
        out = self._out or sys.stdout
        route = event.route or "-"
        verb = "answered" if event.kind == "done" else "FAILED  "
        out.write(
            f"  #{event.index + 1:<3} sent +{self._sent.get(event.index, 0.0):.2f}s  {verb} "
            f"{route:<6} first token {_seconds(self._ttft.get(event.index)):>6}  "
            f"total {event.at:5.2f}s  {event.detail}\n"
        )
        out.flush()

    def close(self) -> None:
        pass


@dataclass
class _Row:
    state: str = "queued"
    sent: float | None = None
    route: str = ""
    ttft: float | None = None
    total: float | None = None
    why: str = ""


_STATE_STYLE = {
    "queued": "dim",
    "waiting": "yellow",
    "streaming": "cyan",
    "answered": "green",
    "FAILED": "bold red",
}
_ROUTE_STYLE = {"local": "magenta", "hosted": "blue"}


class RichView:
    """A table with one row per request, redrawn as events arrive."""

    def __init__(self, title: str, requests: int, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self._title = title
        self._rows = [_Row() for _ in range(requests)]
        self._console = console or Console()
        self._live: Live = Live(
            self._table(), console=self._console, refresh_per_second=12, transient=False
        )
        self._live.start()

    def __call__(self, event: Event) -> None:
        row = self._rows[event.index]
        if event.route:
            row.route = event.route
        if event.kind == "sent":
            row.state, row.sent = "waiting", event.at
        elif event.kind == "first-token":
            row.state, row.ttft = "streaming", event.at
        elif event.kind == "done":
            row.state, row.total, row.why = "answered", event.at, event.detail
        elif event.kind == "failed":
            row.state, row.total, row.why = "FAILED", event.at, event.detail
        self._live.update(self._table())

    def _table(self) -> Table:
        from rich.table import Table
        from rich.text import Text

        table = Table(title=self._title, title_justify="left", expand=False)
        table.add_column("#", justify="right")
        table.add_column("sent", justify="right")
        table.add_column("state")
        table.add_column("route")
        table.add_column("first token", justify="right")
        table.add_column("total", justify="right")
        table.add_column("why", overflow="fold")
        for number, row in enumerate(self._rows, 1):
            table.add_row(
                str(number),
                "" if row.sent is None else f"+{row.sent:.2f}s",
                Text(row.state, style=_STATE_STYLE.get(row.state, "")),
                Text(row.route, style=_ROUTE_STYLE.get(row.route, "")),
                _seconds(row.ttft),
                _seconds(row.total),
                Text(row.why, style="dim"),
            )
        return table

    def close(self) -> None:
        self._live.update(self._table())
        self._live.stop()
