"""HostedBackends for routes written as ``[[routes]]`` tables, for tests that drive a
backend directly (continuation, load signals) rather than through a client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from dsollama._backends import CallSpec, StreamStats
from dsollama._backends.hosted import HostedBackend
from dsollama._catalogue import load_catalogue
from dsollama._config import load_settings
from dsollama._delta import Delta
from dsollama._routes import RouteConfig, load_presets, route_from_table

__all__ = ["collect", "open_backend", "route"]


def route(table: Mapping[str, Any]) -> RouteConfig:
    """A resolved route, from a table that names a preset (``{"preset": "vllm", ...}``)."""
    return route_from_table(table, load_presets())


@contextlib.asynccontextmanager
async def open_backend(table: Mapping[str, Any]) -> AsyncIterator[HostedBackend]:
    backend = HostedBackend(route(table), load_settings(log=False), load_catalogue())
    try:
        yield backend
    finally:
        await backend.aclose()


async def collect(
    backend: HostedBackend,
    spec: CallSpec,
    *,
    model: str,
    partial: tuple[str, str] | None = None,
) -> tuple[list[Delta], StreamStats]:
    """Every delta of one answer (``partial``: continue a broken one from that text)."""
    stats = StreamStats()
    if partial is None:
        stream = backend.stream(spec, model=model, thinking=None, stats=stats)
    else:
        stream = backend.continue_stream(
            spec,
            model=model,
            thinking=None,
            stats=stats,
            partial_content=partial[0],
            partial_thinking=partial[1],
        )
    return [delta async for delta in stream], stats
