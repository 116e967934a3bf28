"""The closing table: answered, failed, latency and first-token percentiles, hosted share
and estimated hosted cost, for dsollama and for the plain client.

Percentiles are over *every* request of the burst: a failed request counts as one that
never answered, so a client cannot look fast by failing its slowest requests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from .burst import Outcome

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["Summary", "percentile", "print_plain", "print_rich", "summarise"]

_INF = math.inf


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` (0-100) of ``values``; inf counts as largest.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    >>> percentile([1.0, 2.0, float("inf")], 99)
    inf
    >>> percentile([], 50)
    nan
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    if low == high or ordered[high] == _INF:
        return ordered[high] if rank > low else ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    label: str
    requests: int
    answered: int
    failed: int
    latency: tuple[float, float, float]
    "p50, p95, p99 seconds (inf when that share of requests did not answer)."
    ttft: tuple[float, float, float]
    hosted: int
    cost_usd: float

    @property
    def hosted_share(self) -> float:
        return self.hosted / self.requests if self.requests else 0.0


def summarise(label: str, outcomes: Sequence[Outcome]) -> Summary:
    latency = [o.latency if o.ok else _INF for o in outcomes]
    ttft = [o.ttft if (o.ok and o.ttft is not None) else _INF for o in outcomes]
    return Summary(
        label=label,
        requests=len(outcomes),
        answered=sum(o.ok for o in outcomes),
        failed=sum(not o.ok for o in outcomes),
        latency=(percentile(latency, 50), percentile(latency, 95), percentile(latency, 99)),
        ttft=(percentile(ttft, 50), percentile(ttft, 95), percentile(ttft, 99)),
        hosted=sum(1 for o in outcomes if o.ok and o.route == "hosted"),
        cost_usd=sum(o.cost_usd for o in outcomes),
    )


def _s(value: float) -> str:
    return "failed" if value == _INF else f"{value:.2f}s"


def _triple(values: tuple[float, float, float]) -> str:
    return " / ".join(_s(v) for v in values)


def _cost(value: float) -> str:
    return f"${value:.5f}" if value else "$0"


_HEADERS = (
    "client",
    "answered",
    "failed",
    "latency p50/p95/p99",
    "first token p50/p95/p99",
    "hosted",
    "est. hosted cost",
)


def _cells(s: Summary) -> tuple[str, ...]:
    return (
        s.label,
        f"{s.answered}/{s.requests}",
        str(s.failed),
        _triple(s.latency),
        _triple(s.ttft),
        f"{s.hosted} ({s.hosted_share:.0%})",
        _cost(s.cost_usd),
    )


def print_plain(summaries: Sequence[Summary], out: TextIO) -> None:
    """A fixed-width text table (CI logs, pipes)."""
    rows = [_HEADERS, *(_cells(s) for s in summaries)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADERS))]
    for row in rows:
        out.write(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            + "\n"
        )
    out.flush()


def print_rich(summaries: Sequence[Summary], console: Console) -> None:
    from rich.table import Table

    table = Table(title="Summary (percentiles over every request; a failure counts as no answer)")
    for header in _HEADERS:
        table.add_column(header, justify="left" if header == "client" else "right")
    for s in summaries:
        table.add_row(*_cells(s))
    console.print(table)
