"""Backends: the only code that talks HTTP to a model server.

A backend turns one request into an async iterator of `Delta`s and translates every
transport or server error into dsollama's error tree. It holds no routing logic: retries,
deadlines between chunks, fallback and racing are the router's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx

from .._config import Settings
from .._delta import Delta
from .._types import RouteKind

__all__ = ["Backend", "CallSpec", "StreamStats", "http_limits", "http_timeout"]


@dataclass
class CallSpec:
    """What the caller asked for, in the official client's vocabulary."""

    operation: Literal["chat", "generate"]
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


@dataclass
class StreamStats:
    """What a backend observed that is not an answer (for fallback reasons and logs)."""

    filler: int = 0
    "Keep-alive comments or blank lines received before data."
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    kind: RouteKind
    route: str
    "Stable route name, e.g. 'local:127.0.0.1:11434'."
    endpoint: str
    "Base URL, without credentials."

    def stream(
        self, spec: CallSpec, *, model: str, thinking: bool | None, stats: StreamStats
    ) -> AsyncIterator[Delta]:
        """Deltas of one answer; the last has ``done=True`` or the iterator raises."""
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
