"""Metrics read from the router when /metrics is scraped: breakers and the state store.

Each is a snapshot of what the app's client knows at that moment (no I/O): the route
breakers of this process's view, and the health of the routing-state store — whether it
answers, how fast (the median and the 99th percentile of its recent operations), and how
often this process had to route on its own view because it did not. Label values come
from closed sets: the configured route names, the store's kind, two quantiles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .metrics import LabelKey, Registry

if TYPE_CHECKING:
    from .._client import AsyncClient
    from .._state import StoreHealth

__all__ = ["register_router_metrics"]

Samples = list[tuple[LabelKey, float]]


def register_router_metrics(registry: Registry, client: Callable[[], AsyncClient | None]) -> None:
    """Add the router's metrics to ``registry``; ``client`` gives the app's client (None
    before startup, when they have no samples)."""

    def breakers() -> Samples:
        current = client()
        if current is None:
            return []
        status = current.router.status()["breakers"]
        # Route-level breakers only: the labels stay the configured routes (a closed set),
        # never a model name a request made up.
        routes = {b.route for b in current.router.backends}
        return [
            ((route,), 1.0 if b["state"] == "open" else 0.0)
            for route, b in status.items()
            if route in routes
        ]

    def health() -> StoreHealth | None:
        current = client()
        return None if current is None else current.router.state.store.health()

    def up() -> Samples:
        h = health()
        return [] if h is None else [((h.kind,), 1.0 if h.ok else 0.0)]

    def fallbacks() -> Samples:
        h = health()
        return [] if h is None else [((h.kind,), float(h.fallbacks))]

    def latency() -> Samples:
        h = health()
        if h is None:
            return []
        quantiles = (("0.5", h.latency_p50_s), ("0.99", h.latency_p99_s))
        return [((q,), value) for q, value in quantiles if value is not None]

    registry.gauge(
        "dsollama_route_breaker_open",
        "1 while a route's breaker keeps calls off it, else 0.",
        ("route",),
        collect=breakers,
    )
    registry.gauge(
        "dsollama_state_store_up",
        "1 while the routing-state store answers, 0 while this process routes on its own view.",
        ("kind",),
        collect=up,
    )
    registry.counter(
        "dsollama_state_store_fallbacks_total",
        "Times this process switched to its own view because the routing-state store failed.",
        ("kind",),
        collect=fallbacks,
    )
    registry.gauge(
        "dsollama_state_store_latency_seconds",
        "Routing-state store operations, recent ones: the median (quantile 0.5) and the "
        "99th percentile (0.99) of their duration.",
        ("quantile",),
        collect=latency,
    )
