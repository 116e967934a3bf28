"""Per-request observation: the serve metrics and the ASGI middleware that feeds them.

The middleware times every request and counts it by route template and outcome; an
answer writer (`streaming.Answer`) refines the outcome through the `RequestStats` it
finds in the scope ("disconnected", "interrupted") and records time to first chunk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .metrics import CallMetrics, Registry

__all__ = ["STATS_KEY", "ObserveMiddleware", "RequestStats", "ServeMetrics", "stats_of"]

STATS_KEY = "dsollama.stats"


@dataclass
class RequestStats:
    """What the answer writer tells the middleware about one request."""

    started: float
    status: int = 0
    outcome: str | None = None
    "Set by the writer when the status alone does not say it: disconnected (the client left),\n    interrupted (the answer broke mid-stream), shutdown (cut when the grace period ended)."


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


def _outcome(status: int) -> str:
    if status < 400:
        return "ok"
    if status < 500:
        return "client_error"
    return "error"


def _route_label(scope: Any) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    # Unknown paths share one label: a scanner must not create a time series per URL.
    return path if isinstance(path, str) else "unmatched"


class ObserveMiddleware:
    """Counts and times every HTTP request (pure ASGI: no body buffering)."""

    def __init__(self, app: Any, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        stats = RequestStats(started=time.perf_counter())
        scope[STATS_KEY] = stats

        async def sender(message: Any) -> None:
            if message["type"] == "http.response.start":
                stats.status = int(message["status"])
            await send(message)

        self.metrics.in_flight.add(1)
        try:
            await self.app(scope, receive, sender)
        finally:
            self.metrics.in_flight.add(-1)
            route = _route_label(scope)
            outcome = stats.outcome or _outcome(stats.status or 500)
            self.metrics.requests.inc(route=route, outcome=outcome)
            self.metrics.duration.observe(time.perf_counter() - stats.started, route=route)
