"""Backends: the only code that talks HTTP to a model server.

A backend is one route (`_routes.RouteConfig`) made live: `daemon.OllamaDaemon` for the
``ollama`` kind, `openai.OpenAIRoute` for the ``openai`` kind. It turns one request into an
async iterator of `Delta`s and translates every transport or server error into dsollama's
error tree. It holds no routing logic: retries, deadlines between chunks, fallback and
racing are the router's.

`Backend` is the whole contract the router relies on, every capability included, so a new
kind of backend has to say what it does about each (``None`` for "cannot tell") and
cannot silently lose admission control.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httpx

from .._config import Settings
from .._delta import Delta
from .._types import RouteKind

if TYPE_CHECKING:
    from .._routes import Capabilities, RouteConfig
    from .._state import ServerQueue

__all__ = [
    "Backend",
    "CallSpec",
    "EmbedSpec",
    "ModelState",
    "StreamStats",
    "http_limits",
    "http_timeout",
]

ModelState = Literal["loaded", "installed", "missing"]
"Where a model is on a server that says: in memory, on disk only, or absent."


@dataclass
class CallSpec:
    """What the caller asked for, in the official client's vocabulary."""

    operation: Literal["chat", "generate", "embed"]
    model: str
    stream: bool = False
    # chat
    messages: Sequence[Any] | None = None
    tools: Sequence[Any] | None = None
    # generate
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: Sequence[int] | None = None
    raw: bool | None = None
    images: Sequence[Any] | None = None
    # both
    think: bool | str | None = None
    format: str | Mapping[str, Any] | None = None
    options: Mapping[str, Any] | None = None
    keep_alive: float | str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None

    def has_images(self) -> bool:
        if self.images:
            return True
        for message in self.messages or ():
            images = (
                message.get("images")
                if isinstance(message, Mapping)
                else getattr(message, "images", None)
            )
            if images:
                return True
        return False


@dataclass(frozen=True)
class EmbedSpec:
    """An embed call, in the official client's vocabulary."""

    model: str
    input: str | Sequence[str] = ""
    truncate: bool | None = None
    options: Mapping[str, Any] | None = None
    keep_alive: float | str | None = None
    dimensions: int | None = None


@dataclass
class StreamStats:
    """What a backend observed that is not an answer (for fallback reasons and logs)."""

    filler: int = 0
    "Keep-alive comments or blank lines received before data."
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """What the router needs from a route. Every member is required."""

    @property
    def config(self) -> RouteConfig: ...

    @property
    def kind(self) -> RouteKind:
        """'local' for a private route (may serve local_only calls), 'hosted' for a third party."""
        ...

    @property
    def api(self) -> Literal["ollama", "openai"]: ...

    @property
    def route(self) -> str:
        """Stable route name, e.g. 'local:127.0.0.1:11434'."""
        ...

    @property
    def endpoint(self) -> str:
        """Base URL, without credentials."""
        ...

    @property
    def capabilities(self) -> Capabilities: ...

    def stream(
        self, spec: CallSpec, *, model: str, thinking: bool | None, stats: StreamStats
    ) -> AsyncIterator[Delta]:
        """Deltas of one answer; the last has ``done=True`` or the iterator raises."""
        ...

    def continue_stream(
        self,
        spec: CallSpec,
        *,
        model: str,
        thinking: bool | None,
        stats: StreamStats,
        partial_content: str,
        partial_thinking: str,
    ) -> AsyncIterator[Delta]:
        """The rest of a broken answer, from its partial text. Raises
        `UnsupportedRequestError` when ``capabilities.continuation`` is false."""
        ...

    async def model_state(self, model: str) -> ModelState | None:
        """Loaded, installed or missing; None when the server does not say. Raises
        `DaemonUnreachableError` when nothing answers (the attempt is over)."""
        ...

    async def warm(self, model: str) -> float | None:
        """Load a model ahead of use; the measured load time, or None."""
        ...

    async def context_window(self, model: str) -> int | None:
        """Tokens a request to ``model`` may hold, when known."""
        ...

    async def server_queue(self, model: str) -> ServerQueue | None:
        """The server's own count of running and waiting requests, when it publishes one."""
        ...

    async def embed(self, spec: EmbedSpec, *, model: str) -> dict[str, Any]:
        """The official ``EmbedResponse`` fields. Raises `UnsupportedRequestError` when
        ``capabilities.embeddings`` is false."""
        ...

    def reopen(self) -> None:
        """Fresh connections for a new event loop (the old loop's were closed with it)."""
        ...

    async def aclose(self) -> None: ...


def http_timeout(settings: Settings) -> httpx.Timeout:
    """The httpx timeout every backend uses.

    Reads are policed by the router's watchdog (first token, gap, total); the read limit
    here is only a backstop so nothing can hang past the total deadline.
    """
    return httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.total_timeout,
        write=settings.total_timeout,
        pool=settings.connect_timeout,
    )


def http_limits() -> httpx.Limits:
    """Connection limits for both backends: well above any real burst.

    httpx's default of 100 connections would make a burst's 101st request wait inside
    the pool — silently, and invisibly to dsollama's admission control, which assumes
    a request it sent is at the server. (The openai client uses the same numbers.)
    """
    return httpx.Limits(max_connections=1000, max_keepalive_connections=100)
