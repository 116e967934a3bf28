"""The ASGI app behind `dsollama serve`: routes, middleware, and the client's lifetime.

    app = create_app()                       # settings from the environment and config file
    uvicorn.run(app, host="127.0.0.1", port=11435)

One `AsyncClient(source="serve")` answers every request for the app's lifetime: created
when the server starts (ASGI lifespan), closed when it stops. It records each call in the
request log like any client (so serve adds no log of its own), and feeds /metrics through
a sink.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from .._config import Settings, load_settings
from .._exceptions import DsollamaError
from .._text_safety import PrintableLogArgs
from . import compat, health, ollama_api, openai_api, passthrough
from .admin import AdminPolicy, admin_policy
from .errors import ApiError, dialect_for, from_exception, render
from .front import FrontDoor
from .info import EXPOSED_HEADERS, dsollama_version
from .observe import ServeMetrics
from .router_metrics import register_router_metrics
from .security import Guard, origin_pattern
from .state import DEFAULT_MAX_BODY, ServeState

if TYPE_CHECKING:
    from .._client import AsyncClient
    from .._routing.shapes import CallSink

__all__ = ["DEFAULT_MAX_BODY", "create_app"]

logger = logging.getLogger("dsollama.serve")


def _routes() -> list[Route]:
    forward, blob = passthrough.forward, passthrough.forward_blob
    return [
        # Ollama's native API (GET routes answer HEAD too)
        Route("/", ollama_api.root, methods=["GET"]),
        Route("/api/version", ollama_api.version_route, methods=["GET"]),
        Route("/api/tags", ollama_api.tags, methods=["GET"]),
        Route("/api/ps", ollama_api.ps, methods=["GET"]),
        Route("/api/show", ollama_api.show, methods=["POST"]),
        Route("/api/chat", ollama_api.chat, methods=["POST"]),
        Route("/api/generate", ollama_api.generate, methods=["POST"]),
        Route("/api/embed", ollama_api.embed, methods=["POST"]),
        Route("/api/embeddings", forward, methods=["POST"]),
        Route("/api/pull", forward, methods=["POST"]),
        Route("/api/push", forward, methods=["POST"]),
        Route("/api/create", forward, methods=["POST"]),
        Route("/api/copy", forward, methods=["POST"]),
        Route("/api/delete", forward, methods=["DELETE"]),
        Route("/api/blobs/{digest}", blob, methods=["HEAD", "POST"]),
        # OpenAI's API
        Route("/v1/models", openai_api.list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", openai_api.retrieve_model, methods=["GET"]),
        Route("/v1/chat/completions", openai_api.chat_completions, methods=["POST"]),
        Route("/v1/completions", openai_api.completions, methods=["POST"]),
        Route("/v1/embeddings", openai_api.embeddings, methods=["POST"]),
        # the classic compatibility route
        Route("/generate", compat.generate, methods=["POST"]),
        # operations
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", health.metrics, methods=["GET"]),
    ]


class ServeApp(Starlette):
    """Starlette with the front door (`front.FrontDoor`) as its one middleware, outside
    its error handling. The front door calls the POST routes without path parameters (the
    model routes among them) directly; every other request goes through Starlette's
    router and error handling as before."""

    def __init__(self, *, front: Callable[[ASGIApp, list[Route]], ASGIApp], **kwargs: Any) -> None:
        self._front = front
        super().__init__(**kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        direct = [
            r
            for r in self.routes
            if isinstance(r, Route) and r.methods == {"POST"} and not r.param_convertors
        ]
        return self._front(super().build_middleware_stack(), direct)


def _error_response(request: Request, error: ApiError) -> Response:
    status, headers, body = render(error, dialect_for(request.url.path))
    return Response(body, status_code=status, headers=headers)


async def _on_error(request: Request, exc: Exception) -> Response:
    return _error_response(request, from_exception(exc))


async def _on_disconnect(request: Request, exc: Exception) -> Response:
    # The client left (or was cut off for sending its body too slowly) before its body
    # arrived: nobody is there to read an answer, and it is no error of ours to log.
    return Response(status_code=400)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if dialect_for(path) == "ollama":
        # The daemon's own plain-text answers, which Ollama clients already handle.
        text = "404 page not found" if exc.status_code == 404 else "405 method not allowed"
        return PlainTextResponse(text, status_code=exc.status_code, headers=exc.headers)
    if exc.status_code == 404:
        message = f"unknown route {request.method} {path}; this server offers /v1/models, /v1/chat/completions, /v1/completions and /v1/embeddings"
        code = "unknown_url"
    else:
        message = f"method {request.method} is not allowed on {path}"
        code = "method_not_allowed"
    response = _error_response(request, ApiError(exc.status_code, message, code=code))
    response.headers.update(exc.headers or {})
    return response


def create_app(
    client: AsyncClient | None = None,
    settings: Settings | None = None,
    *,
    token: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    default_model: str = "deepseek-r1:8b",
    cors_origins: Sequence[str] = (),
    sinks: Sequence[CallSink] = (),
    allow_admin: bool | None = None,
    admin_token: str | None = None,
) -> Starlette:
    """The serve app.

    ``client``: answer through this client (the caller owns and closes it); by default the
    app makes its own `AsyncClient(source="serve")` from ``settings`` at startup and closes
    it at shutdown. ``token``: require ``Authorization: Bearer <token>`` on every route but
    /healthz (default: ``settings.serve_token``). ``max_body``: largest JSON request body in
    bytes. ``default_model``: the model of ``POST /generate`` when the request names none.
    ``cors_origins``: browser origins allowed besides local pages and desktop apps.
    ``sinks``: extra call sinks for the app's own client.

    Provisioning (pull, create, copy, delete, push, blob uploads) is relayed to the
    daemon: ``admin_token`` (default: ``settings.serve_admin_token``) makes those routes
    need ``Bearer <admin_token>``; otherwise ``allow_admin`` opens or closes them, and by
    default they are open only when ``settings.serve_host`` is a loopback address. If you
    run the app on another address yourself, pass ``allow_admin=False``.
    """
    if settings is None:
        settings = client.settings if client is not None else load_settings()
    if token is None and settings.serve_token is not None:
        token = settings.serve_token.get_secret_value()
    if admin_token is None and settings.serve_admin_token is not None:
        admin_token = settings.serve_admin_token.get_secret_value()
    admin: AdminPolicy = admin_policy(
        allow_admin=allow_admin, admin_token=admin_token, host=settings.serve_host
    )
    # Log lines carry model names, paths and error texts from requests: escape them.
    PrintableLogArgs.install("dsollama", "dsollama.serve")
    metrics = ServeMetrics()
    state = ServeState(
        settings=settings,
        metrics=metrics,
        max_body=max_body,
        default_model=default_model,
        admin=admin,
    )

    register_router_metrics(metrics.registry, lambda: state.client)
    metrics.registry.gauge(
        "dsollama_build_info",
        "dsollama's version.",
        ("version",),
        collect=lambda: [((dsollama_version(),), 1.0)],
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = client is None
        if client is None:
            from .._client import AsyncClient

            try:
                state.client = AsyncClient(
                    settings=settings, source="serve", sinks=[metrics.calls, *sinks]
                )
            except DsollamaError as exc:
                # uvicorn reports a failed startup as a traceback, escaped and cut short in
                # the log: say what is wrong, and the fix, in one line of its own.
                logger.error("dsollama serve cannot start: %s", exc.one_line())
                raise
        else:
            state.client = client
            client.router.sinks.append(metrics.calls)
        try:
            yield
        finally:
            if owned:
                await state.client.aclose()
            else:
                with contextlib.suppress(ValueError):
                    state.client.router.sinks.remove(metrics.calls)

    handlers: dict[Any, Any] = {
        ApiError: _on_error,
        DsollamaError: _on_error,
        ClientDisconnect: _on_disconnect,
        404: _on_http_error,
        405: _on_http_error,
        Exception: _on_error,
    }
    app = ServeApp(
        routes=_routes(),
        exception_handlers=handlers,
        lifespan=lifespan,
        front=lambda inner, direct: FrontDoor(
            inner,
            metrics=metrics,
            # Without a token, the admin token alone does not open the server to others.
            guard=Guard([token, admin_token or ""] if token else (), cors_origins),
            admin=admin,
            cors_origin_regex=origin_pattern(cors_origins),
            exposed_headers=EXPOSED_HEADERS,
            fast_routes=direct,
        ),
    )
    app.state.dsollama = state
    return app
