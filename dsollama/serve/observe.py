"""Per-request observation: the serve metrics and what one request tells them.

The front door (`front`) times every request and counts it by route template and
outcome; an answer writer (`streaming.Answer`) refines the outcome through the
`RequestStats` it finds in the scope ("disconnected", "interrupted") and records time to
first chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .metrics import CallMetrics, Registry

__all__ = ["STATS_KEY", "RequestStats", "ServeMetrics", "route_label", "stats_of"]

STATS_KEY = "dsollama.stats"


@dataclass
class RequestStats:
    """What the answer writer tells the middleware about one request."""

    started: float
    status: int = 0
    outcome: str | None = None
    "Set by the writer when the status alone does not say it: disconnected (the client left),\n    interrupted (the answer broke mid-stream), shutdown (cut when the grace period ended)."

    def default_outcome(self) -> str:
        """The outcome the status says (no status sent: an error)."""
        status = self.status or 500
        if status < 400:
            return "ok"
        return "client_error" if status < 500 else "error"


def stats_of(scope: Any) -> RequestStats | None:
    stats = scope.get(STATS_KEY) if isinstance(scope, dict) else None
    return stats if isinstance(stats, RequestStats) else None


class ServeMetrics:
    """Every metric `dsollama serve` exposes on /metrics."""

    def __init__(self) -> None:
        self.registry = Registry()
        self.requests = self.registry.counter(
            "dsollama_serve_requests_total",
            "HTTP requests by route and outcome: ok, client_error, error, disconnected, interrupted, shutdown.",
            ("route", "outcome"),
        )
        self.duration = self.registry.histogram(
            "dsollama_serve_request_duration_seconds",
            "Time from request to the end of the response (whole streams included), by route.",
            ("route",),
        )
        self.first_chunk = self.registry.histogram(
            "dsollama_serve_first_token_seconds",
            "Streamed answers: time from request to the first chunk sent, by route and route kind.",
            ("route", "served"),
        )
        self.in_flight = self.registry.gauge(
            "dsollama_serve_in_flight", "Requests being answered now."
        )
        self.calls = CallMetrics(self.registry)

    def render(self) -> str:
        return self.registry.render()


def route_label(scope: Any) -> str:
    """The route template a request matched (a closed set), or "unmatched"."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    # Unknown paths share one label: a scanner must not create a time series per URL.
    return path if isinstance(path, str) else "unmatched"
