"""The one ASGI layer in front of every route: observe, CORS, who may ask, the way in.

Every HTTP request passes here once. In one pass over its headers the layer reads what
the checks need, then, in the order the server has always applied them:

1. counts and times the request for /metrics (`observe`), whatever happens next;
2. answers a browser's CORS preflight (Starlette's own `CORSMiddleware` logic);
3. refuses what `security.Guard` refuses (a missing or wrong token; without a token, a
   Host that is not local or an Origin that is not allowed) and what the admin policy
   refuses (`admin`), without reading the body;
4. hands the request to its route: the model routes (chat, generate, embeddings in both
   dialects) straight to their handler, everything else to Starlette's router.

One layer instead of a stack of five: each layer wrapped every message sent (a streamed
answer sends one per chunk) and the model routes paid Starlette's routing and two
exception-handling layers per request. Responses get the CORS headers the middleware
would have added: ``Vary: Origin`` without an Origin, the allow/expose headers with one.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .admin import AdminPolicy
from .errors import dialect_for, from_exception, render
from .observe import STATS_KEY, RequestStats, ServeMetrics, route_label
from .security import Guard, refuse

__all__ = ["FrontDoor"]

Handler = Callable[[Request], Awaitable[Response]]

_VARY = b"vary"
_ORIGIN = b"Origin"


def _with_vary_origin(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """What CORSMiddleware does to a response to a request without an Origin header:
    ``Vary`` gains ``Origin`` (one header, joining any the response had)."""
    at = [i for i, (name, _) in enumerate(headers) if name.lower() == _VARY]
    if not at:
        return [*headers, (_VARY, _ORIGIN)]
    joined = b", ".join([*(headers[i][1] for i in at), _ORIGIN])
    # MutableHeaders' way: the first Vary keeps its place, the others go.
    out = [pair for i, pair in enumerate(headers) if i not in at[1:]]
    out[at[0]] = (_VARY, joined)
    return out


class FrontDoor:
    """See the module docstring. ``app``: Starlette's stack (its router, exception
    handlers and lifespan) for everything that is not a fast route."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ServeMetrics,
        guard: Guard,
        admin: AdminPolicy,
        cors_origin_regex: str,
        exposed_headers: Sequence[str],
        fast_routes: Sequence[Route],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.guard = guard
        self.admin = admin
        self.cors = CORSMiddleware(
            app,
            allow_origin_regex=cors_origin_regex,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=list(exposed_headers),
        )
        self.fast: dict[str, tuple[Route, Handler]] = {}
        for route in fast_routes:
            assert route.methods == {"POST"}, "fast routes take POST only"
            self.fast[route.path] = (route, route.endpoint)
        self._requests = metrics.requests
        self._duration = metrics.duration
        self._in_flight = metrics.in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        stats = RequestStats(started=time.perf_counter())
        scope[STATS_KEY] = stats
        host = origin = authorization = None
        preflight = False
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"origin":
                origin = value
            elif name == b"authorization":
                if authorization is None:
                    authorization = value
            elif name == b"access-control-request-method":
                preflight = True

        async def sender(message: Message) -> None:
            if message["type"] == "http.response.start":
                stats.status = int(message["status"])
                if origin is not None:
                    await self.cors.send(message, send, Headers(scope=scope))
                    return
                message["headers"] = _with_vary_origin(list(message.get("headers", ())))
            await send(message)

        self._in_flight.add_key((), 1)
        try:
            await self._answer(scope, receive, sender, host, origin, authorization, preflight)
        finally:
            self._in_flight.add_key((), -1)
            label = route_label(scope)
            self._requests.inc_key((label, stats.outcome or stats.default_outcome()))
            self._duration.observe_key((label,), time.perf_counter() - stats.started)

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        host: bytes | None,
        origin: bytes | None,
        authorization: bytes | None,
        preflight: bool,
    ) -> None:
        method, path = scope["method"], scope["path"]
        if origin is not None and preflight and method == "OPTIONS":
            response = self.cors.preflight_response(request_headers=Headers(scope=scope))
            await response(scope, receive, send)
            return
        refusal = self.guard.refusal(path, method, host, origin, authorization)
        if refusal is None:
            refusal = self.admin.refusal(path, method, authorization)
        if refusal is not None:
            await refuse(
                send,
                path,
                refusal.error,
                www_authenticate=refusal.www_authenticate,
                close=refusal.close,
            )
            return
        fast = self.fast.get(path) if method == "POST" and not scope.get("root_path") else None
        if fast is None:
            await self.app(scope, receive, send)
            return
        await self._fast(fast, scope, receive, send)

    async def _fast(
        self, fast: tuple[Route, Handler], scope: Scope, receive: Receive, send: Send
    ) -> None:
        """A model route without Starlette's router: the same handler, the same errors."""
        route, handler = fast
        scope["route"] = route
        scope["endpoint"] = handler
        scope["path_params"] = {}
        stats: RequestStats = scope[STATS_KEY]
        try:
            response = await handler(Request(scope, receive, send))
            await response(scope, receive, send)
        except ClientDisconnect:
            # The client left before its body arrived: nobody reads an answer, no error.
            if not stats.status:
                await Response(status_code=400)(scope, receive, send)
        except Exception as exc:
            if stats.status:
                raise  # an answer already started: the server ends the connection
            status, headers, body = render(from_exception(exc), dialect_for(scope["path"]))
            await Response(body, status_code=status, headers=headers)(scope, receive, send)
