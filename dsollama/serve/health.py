"""``/healthz`` (the process answers), ``/readyz`` (a route can answer now), ``/metrics``.

``/readyz`` asks each local daemon for its version (bounded by the connect timeout) and
reads each route's breaker from the routing-state store, so "ready" means what a caller
cares about: a request sent now has a route that is up and not cut off by its breaker —
as every replica sharing the store sees it. The hosted route is not probed (that would be
a request to a paid API per probe); it counts as usable while its key is set and its
breaker is not open. 200 when ready, 503 when not, same body.

The body also says how the store is doing. A shared store (Redis) that fails never fails
a call — the process routes on its own view until the store is back — so a store that is
down leaves the server ready; the body says so, and what it costs (replicas stop seeing
each other's requests).

``/healthz`` names the process (``pid``): behind a load balancer, or with ``--workers``,
it tells which process answered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import TYPE_CHECKING, Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._exceptions import redact
from .info import dsollama_version
from .metrics import CONTENT_TYPE
from .state import ServeState, state_of

if TYPE_CHECKING:
    from .._state import StoreHealth

__all__ = ["healthz", "metrics", "readyz"]


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok", "version": dsollama_version(), "pid": os.getpid()})


async def _probe_local(state: ServeState, route: str) -> dict[str, Any]:
    timeout = state.ai.settings.connect_timeout
    try:
        response = await state.daemon(route).http.get("/api/version", timeout=timeout)
        response.raise_for_status()
        reported = response.json().get("version")
    except (httpx.HTTPError, ValueError) as exc:
        return {"reachable": False, "detail": redact(f"{type(exc).__name__}: {exc}")[:200]}
    return {"reachable": True, "version": reported}


STORE_DOWN_NOTE = (
    "the routing-state store is not answering: this process routes on its own view until "
    "it is back, and no call fails because of it; meanwhile it does not see the requests "
    "of other processes sharing the store"
)


def _store(health: StoreHealth) -> dict[str, Any]:
    body = dataclasses.asdict(health)
    if body["last_error"]:
        body["last_error"] = redact(body["last_error"])[:300]
    if health.using_fallback or not health.ok:
        body["note"] = STORE_DOWN_NOTE
    return body


async def readyz(request: Request) -> Response:
    state = state_of(request)
    router = state.ai.router
    daemons = [b for b in router.backends if b.api == "ollama"]
    # Breakers as the store holds them (every process sharing it), asked alongside the
    # probes; asking also tells how the store is doing right now.
    probes, breakers = await asyncio.gather(
        asyncio.gather(*(_probe_local(state, b.route) for b in daemons)),
        asyncio.gather(*(router.breaker_state(b.route) for b in router.backends)),
    )
    probed = dict(zip((b.route for b in daemons), probes, strict=True))
    routes: list[dict[str, Any]] = []
    for backend, breaker_state in zip(router.backends, breakers, strict=True):
        breaker = breaker_state.state
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
    # The store's health does not enter into readiness: its failure never fails a call.
    ready = any(r["usable"] for r in routes)
    body = {
        "ready": ready,
        "policy": state.ai.settings.policy,
        "routes": routes,
        "local_load": router.status()["local"],
        "store": _store(router.state.store.health()),
    }
    return JSONResponse(body, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    state = state_of(request)
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)
