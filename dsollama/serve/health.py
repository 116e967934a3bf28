"""``/healthz`` (the process answers), ``/readyz`` (a route can answer now), ``/metrics``.

``/readyz`` asks each local daemon for its version (bounded by the connect timeout) and
reads the router's breakers, so "ready" means what a caller cares about: a request sent
now has a route that is up and not cut off by its breaker. The hosted route is not
probed (that would be a request to a paid API per probe); it counts as usable while its
key is set and its breaker is not open. 200 when ready, 503 when not, same body.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._exceptions import redact
from .info import dsollama_version
from .metrics import CONTENT_TYPE
from .state import ServeState, state_of

__all__ = ["healthz", "metrics", "readyz"]


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok", "version": dsollama_version()})


async def _probe_local(state: ServeState, endpoint: str) -> dict[str, Any]:
    timeout = state.ai.settings.connect_timeout
    try:
        response = await state.http.get(f"{endpoint}/api/version", timeout=timeout)
        response.raise_for_status()
        reported = response.json().get("version")
    except (httpx.HTTPError, ValueError) as exc:
        return {"reachable": False, "detail": redact(f"{type(exc).__name__}: {exc}")[:200]}
    return {"reachable": True, "version": reported}


async def readyz(request: Request) -> Response:
    state = state_of(request)
    router = state.ai.router
    breakers = router.status()["breakers"]
    daemons = [b for b in router.backends if b.api == "ollama"]
    probes = await asyncio.gather(*(_probe_local(state, b.endpoint) for b in daemons))
    probed = dict(zip((b.route for b in daemons), probes, strict=True))
    routes: list[dict[str, Any]] = []
    for backend in router.backends:
        breaker = breakers.get(backend.route, {}).get("state", "closed")
        entry: dict[str, Any] = {
            "route": backend.route,
            "kind": backend.kind,
            "api": backend.api,
            "endpoint": backend.endpoint,
            "breaker": breaker,
        }
        if backend.route in probed:
            probe = probed[backend.route]
            entry.update(probe, usable=probe["reachable"] and breaker != "open")
        else:
            allowed = backend.kind == "local" or state.hosted_configured
            entry.update(probed=False, allowed=allowed, usable=allowed and breaker != "open")
        routes.append(entry)
    ready = any(r["usable"] for r in routes)
    body = {
        "ready": ready,
        "policy": state.ai.settings.policy,
        "routes": routes,
        "local_load": router.status()["local"],
    }
    return JSONResponse(body, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    state = state_of(request)
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)
