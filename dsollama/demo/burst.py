"""Send one burst of concurrent streamed chats and time every request.

The same burst goes through `dsollama.AsyncClient` and through the official
`ollama.AsyncClient`; each request reports events (sent, first token, done or failed) to a
listener as they happen, so the live view can show them, and ends as one `Outcome`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from dsollama._client import AsyncClient
    from dsollama._types import Attempt, ChatResponse

__all__ = ["Event", "Listener", "Outcome", "describe_route", "dsollama_burst", "plain_burst"]

EventKind = Literal["sent", "first-token", "done", "failed"]


@dataclass(frozen=True)
class Event:
    kind: EventKind
    index: int
    at: float
    "Seconds since this request was sent (for 'sent': since the burst started)."
    route: str | None = None
    "'local' or 'hosted', once known."
    detail: str = ""
    "Why this route (or what failed)."


Listener = Callable[[Event], None]


@dataclass(frozen=True)
class Outcome:
    """One request of a burst, start to end."""

    index: int
    ok: bool
    route: str | None
    ttft: float | None
    "Seconds from sending the request to the first token the caller saw."
    latency: float
    "Seconds from sending the request to the last chunk (or to the failure)."
    why: str
    cost_usd: float = 0.0


def _question(index: int) -> list[dict[str, str]]:
    # Different questions, so answers differ as they would in real use.
    return [{"role": "user", "content": f"Question {index + 1}: why run DeepSeek locally?"}]


def describe_route(response: ChatResponse) -> str:
    """Why this answer came from where it did, in one line."""
    served = response.served_by
    attempts: list[Attempt] = list(response.attempts or [])
    parts: list[str] = []
    if response.fallback_reason:
        parts.append(response.fallback_reason)
    elif served is not None and served.kind == "local":
        parts.append("local first token predicted within the budget")
    for attempt in attempts:
        if attempt.outcome == "retry":
            status = f" {attempt.status_code}" if attempt.status_code else ""
            parts.append(f"{attempt.kind}{status} retried")
    final = attempts[-1] if attempts else None
    if final is not None and final.kind == "hosted" and final.ttft_s is not None:
        parts.append(f"hosted first token in {final.ttft_s:.2f}s")
    return "; ".join(parts)


def _delay(index: int, requests: int, spread: float) -> float:
    """When request ``index`` leaves: evenly over ``spread`` seconds (0: all at once)."""
    return spread * index / (requests - 1) if requests > 1 else 0.0


async def _timed(
    index: int,
    delay: float,
    listener: Listener,
    open_stream: Callable[[], Awaitable[AsyncIterator[Any]]],
    route_of: Callable[[Any], str | None],
    finish: Callable[[Any], tuple[str, float]],
    silent_failure: str = "no detail",
) -> Outcome:
    await asyncio.sleep(delay)
    started = time.perf_counter()
    listener(Event("sent", index, delay))
    ttft: float | None = None
    route: str | None = None
    last: Any = None
    try:
        async for part in await open_stream():
            if ttft is None and (part.message.content or part.message.thinking):
                ttft = time.perf_counter() - started
                route = route_of(part)
                listener(Event("first-token", index, ttft, route))
            last = part
    except Exception as exc:
        at = time.perf_counter() - started
        # httpx timeouts carry no message: say what the silence meant instead.
        text = str(exc).splitlines()[0][:120] if str(exc) else silent_failure
        why = f"{type(exc).__name__}: {text}"
        listener(Event("failed", index, at, route, why))
        return Outcome(index, False, route, ttft, at, why)
    at = time.perf_counter() - started
    why, cost = finish(last)
    route = route or route_of(last)
    listener(Event("done", index, at, route, why))
    return Outcome(index, True, route, ttft, at, why, cost)


async def dsollama_burst(
    client: AsyncClient, model: str, requests: int, spread: float, listener: Listener
) -> list[Outcome]:
    """``requests`` concurrent streamed chats through dsollama, sent over ``spread`` s."""

    def route_of(part: Any) -> str | None:
        return part.served_by.kind if part.served_by is not None else None

    def finish(last: Any) -> tuple[str, float]:
        return describe_route(last), float(last.cost_usd or 0.0)

    def one(index: int) -> Awaitable[Outcome]:
        async def open_stream() -> AsyncIterator[Any]:
            return await client.chat(model, _question(index), stream=True)

        return _timed(
            index, _delay(index, requests, spread), listener, open_stream, route_of, finish
        )

    return list(await asyncio.gather(*(one(i) for i in range(requests))))


async def plain_burst(
    host: str, model: str, requests: int, spread: float, timeout: float, listener: Listener
) -> list[Outcome]:
    """The same burst through the official client: local only, explicit timeout."""
    import ollama

    def finish(last: Any) -> tuple[str, float]:
        return "the official client only knows the local daemon", 0.0

    async with ollama.AsyncClient(host=host, timeout=timeout) as client:

        def one(index: int) -> Awaitable[Outcome]:
            async def open_stream() -> AsyncIterator[Any]:
                stream: AsyncIterator[Any] = await client.chat(model, _question(index), stream=True)
                return stream

            return _timed(
                index,
                _delay(index, requests, spread),
                listener,
                open_stream,
                lambda _: "local",
                finish,
                silent_failure=f"no byte within the {timeout:g}s timeout (queued silently)",
            )

        return list(await asyncio.gather(*(one(i) for i in range(requests))))
