"""Response bodies of OpenAI-format doubles: pacing, holds, and faults in flight.

Every OpenAI-format server streams the same way — ``data: {json}`` events, ``data: [DONE]``
at the end — and a non-streaming answer is one JSON object. What differs between servers
is the bytes around the answer (content types, headers, how an error looks in the middle
of an answer); a `Wire` describes those. `json_response` and `sse_response` turn a
rendered answer into what goes on the wire for one request, applying the fault it took
and the `Pacing` read from the double's settings when the request arrived.

The DeepSeek double and the vLLM / llama-server doubles share this module; the fault
kinds are those of `dsollama.testing._faults`.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._faults import Fault, FaultPlan
from ._server import AbortConnection, Response, StreamResponse

__all__ = [
    "DONE",
    "HOLD_FAULTS",
    "MID_STREAM_FAULTS",
    "Hold",
    "Pacing",
    "Slot",
    "Wire",
    "html_response",
    "json_response",
    "sse_response",
    "wrong_typed",
]

DONE = b"data: [DONE]\n\n"
KEEPALIVE_SSE = b": keep-alive\n\n"
KEEPALIVE_JSON = b"\n"
MID_STREAM_FAULTS = frozenset(
    {"stall_after", "drop", "close_without_done", "error_line", "malformed_line", "blank_line"}
)
HOLD_FAULTS = frozenset(
    {"stall_before", "stall_after", "slow_first_token", "keepalive", "keepalive_then_close"}
)


@dataclass(frozen=True)
class Wire:
    """The bytes around an answer that differ from one OpenAI-format server to another."""

    json_type: str
    "Content-Type of a one-object answer."
    sse_type: str
    "Content-Type of a stream."
    error_body: Callable[[str | None], bytes]
    "The body of an ``error_line`` fault on a non-streaming answer (sent with a 200)."
    error_event: Callable[[str | None], bytes]
    "The in-band error event of an ``error_line`` fault on a stream."
    headers: Callable[[], dict[str, str]] = dict
    "Headers of every answer (called once per answer: trace ids may differ)."
    sse_headers: Mapping[str, str] = field(default_factory=dict)
    "Extra headers of a stream."
    done_after_error: bool = False
    "Whether ``data: [DONE]`` follows the in-band error event (vLLM) or the stream just ends."


@dataclass(frozen=True)
class Pacing:
    """How fast an answer goes out; ``tokens_per_second <= 0`` means as fast as possible."""

    tokens_per_second: float
    first_token_seconds: float
    keepalive_interval: float = 0.05

    @property
    def paced(self) -> bool:
        tps = self.tokens_per_second
        return tps > 0 and math.isfinite(tps)

    def seconds_for(self, tokens: int) -> float:
        """Time to produce a whole answer of ``tokens`` tokens."""
        paced = tokens / self.tokens_per_second if self.paced else 0.0
        return self.first_token_seconds + paced


class Slot:
    """Wraps a response body so what the request holds (its in-flight slot, its hold) is
    given back exactly once: when the body ends, fails, is cancelled (client gone) or is
    closed without having run."""

    def __init__(self, inner: AsyncIterator[bytes], release: Callable[[], None]) -> None:
        self._inner = inner
        self._release: Callable[[], None] | None = release

    def _free(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    def __aiter__(self) -> Slot:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._inner.__anext__()
        except BaseException:
            self._free()
            raise

    async def aclose(self) -> None:
        try:
            aclose = getattr(self._inner, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            self._free()


class Hold:
    """The wait of one fault: ``seconds``, or until `FaultPlan.release()` when 0.

    A release-wait is registered with the plan when the hold is made, before the client
    can observe anything (headers, a filler line, the in-flight count). `FaultPlan.stall`
    registers only once awaited, so a test that releases as soon as it sees the hold could
    otherwise slip in first and leave the request held for ever.
    """

    def __init__(self, plan: FaultPlan, seconds: float) -> None:
        self.seconds = seconds
        self._released: asyncio.Task[None] | None = None
        if seconds <= 0:
            self._released = asyncio.ensure_future(plan.stall(0))

    @classmethod
    async def make(cls, plan: FaultPlan, fault: Fault | None) -> Hold | None:
        if fault is None or fault.kind not in HOLD_FAULTS:
            return None
        hold = cls(plan, fault.seconds)
        if hold._released is not None:
            await asyncio.sleep(0)  # the task's first step registers it with the plan
        return hold

    async def wait(self) -> None:
        if self._released is None:
            await asyncio.sleep(self.seconds)
        else:
            await self._released

    async def over_within(self, timeout: float) -> bool:
        """For release-waits: True once released, False when ``timeout`` passed first."""
        if self._released is None:
            raise RuntimeError("a timed hold has no release")
        done, _ = await asyncio.wait({self._released}, timeout=timeout)
        return bool(done)

    def cancel(self) -> None:
        if self._released is not None:
            self._released.cancel()


def _headers(fault: Fault | None, wire: Wire) -> dict[str, str]:
    headers = wire.headers()
    if fault is not None and fault.kind == "keepalive_then_close":
        # The body ends (cleanly, so a client sees "no JSON" rather than a protocol error)
        # and the connection goes with it.
        headers["Connection"] = "close"
    return headers


async def _filler(fault: Fault, hold: Hold, pacing: Pacing, line: bytes) -> AsyncIterator[bytes]:
    """Keep-alive filler: one line at once, then one per interval."""
    loop = asyncio.get_running_loop()
    interval = fault.interval or pacing.keepalive_interval
    yield line
    if fault.seconds > 0:
        deadline = loop.time() + fault.seconds
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await asyncio.sleep(min(interval, remaining))
            if loop.time() < deadline:
                yield line
    else:
        while not await hold.over_within(interval):
            yield line


# -- one JSON object --------------------------------------------------------------------


async def json_response(
    body: bytes, tokens: int, fault: Fault | None, hold: Hold | None, pacing: Pacing, wire: Wire
) -> Response | StreamResponse:
    """A non-streaming answer of ``tokens`` tokens, shaped by ``fault``.

    Without a fault (or with one that only changes the bytes) it is a plain response sent
    when the answer is complete; faults that act over time need the status line first, so
    those answers are chunked.
    """
    delay = pacing.seconds_for(tokens)
    kind = fault.kind if fault is not None else None
    if fault is None or kind in ("error_line", "malformed_line", "blank_line", "wrong_type"):
        if delay > 0:
            await asyncio.sleep(delay)
        if kind == "wrong_type":
            body = json.dumps(wrong_typed(json.loads(body)), separators=(",", ":")).encode()
        elif kind == "error_line":
            body = wire.error_body(fault.message if fault is not None else None)
        elif kind == "malformed_line":
            body = b"this is not JSON\n"
        elif kind == "blank_line":
            body = b"\n"  # a 200 with a whitespace-only body
        return Response(body=body, content_type=wire.json_type, headers=wire.headers())
    return StreamResponse(
        _json_body(body, fault, hold, pacing, delay),
        content_type=wire.json_type,
        headers=_headers(fault, wire),
    )


async def _json_body(
    body: bytes, fault: Fault, hold: Hold | None, pacing: Pacing, delay: float
) -> AsyncIterator[bytes]:
    kind = fault.kind
    if kind in ("keepalive", "keepalive_then_close"):
        assert hold is not None
        async for line in _filler(fault, hold, pacing, KEEPALIVE_JSON):
            yield line
        if kind == "keepalive_then_close":
            return
    elif kind == "slow_first_token":
        assert hold is not None
        await hold.wait()
    if delay > 0:
        await asyncio.sleep(delay)
    half = len(body) // 2 if fault.after_chunks else 0
    if kind == "stall_after":
        assert hold is not None
        yield body[:half]
        await hold.wait()
        yield body[half:]
    elif kind == "drop":
        yield body[:half]
        raise AbortConnection
    elif kind == "close_without_done":
        yield body[:half]
    else:
        yield body


# -- what a confused server or proxy sends ------------------------------------------------

# What a proxy or captive portal answers in the API's place (the html_body fault).
PROXY_PAGE = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>\n"
)
_TEXT_FIELDS = ("content", "reasoning_content", "reasoning", "text")


def html_response() -> Response:
    """The html_body fault: a 200 HTML page where the answer should be."""
    return Response(body=PROXY_PAGE, content_type="text/html; charset=utf-8")


def _numbers_for_text(part: dict[str, Any]) -> None:
    for key in _TEXT_FIELDS:
        if isinstance(part.get(key), str):
            part[key] = 42


def wrong_typed(payload: dict[str, Any]) -> dict[str, Any]:
    """The wrong_type fault on a chunk or a whole body: its text fields become numbers.

    The text they held is lost on the way, so a client that skips the chunk (instead of
    failing the answer) returns an answer that is short but looks complete.
    """
    for choice in payload.get("choices") or ():
        _numbers_for_text(choice)
        for key in ("delta", "message"):
            if isinstance(choice.get(key), dict):
                _numbers_for_text(choice[key])
    return payload


def _wrong_typed_event(event: bytes) -> bytes:
    payload = wrong_typed(json.loads(event.strip().removeprefix(b"data: ")))
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


# -- server-sent events -------------------------------------------------------------------


def sse_response(
    events: list[tuple[bool, bytes]],
    fault: Fault | None,
    hold: Hold | None,
    pacing: Pacing,
    wire: Wire,
) -> StreamResponse:
    """A stream of rendered events (each with "is a token", for pacing), then [DONE]."""
    headers = _headers(fault, wire)
    headers.update(wire.sse_headers)
    return StreamResponse(
        sse_events(events, fault, hold, pacing, wire), content_type=wire.sse_type, headers=headers
    )


async def sse_events(
    events: list[tuple[bool, bytes]],
    fault: Fault | None,
    hold: Hold | None,
    pacing: Pacing,
    wire: Wire,
) -> AsyncIterator[bytes]:
    """The bytes of `sse_response`, for a double that wraps them (a scheduler's slot)."""
    kind = fault.kind if fault is not None else None
    if fault is not None and hold is not None and kind in ("keepalive", "keepalive_then_close"):
        async for line in _filler(fault, hold, pacing, KEEPALIVE_SSE):
            yield line
        if kind == "keepalive_then_close":
            return  # closed before inference started, no data at all
    elif hold is not None and kind == "slow_first_token":
        await hold.wait()
    loop = asyncio.get_running_loop()
    tps = pacing.tokens_per_second
    start = loop.time() + pacing.first_token_seconds
    cut_at = fault.after_chunks if fault is not None and kind in MID_STREAM_FAULTS else -1
    # wrong_type changes a chunk instead of adding one: at most the last (finish) chunk.
    retype_at = (
        min(fault.after_chunks, len(events) - 1)
        if fault is not None and kind == "wrong_type"
        else -1
    )
    tokens = 0
    for index, (is_token, data) in enumerate(events):
        if index == retype_at:
            data = _wrong_typed_event(data)
        if index == cut_at:
            assert fault is not None
            before = loop.time()
            extra, go_on = await _mid_stream(fault, hold, wire)
            start += loop.time() - before  # carry on at the same pace after a stall
            if extra:
                yield extra
            if not go_on:
                return
        # Due times from the start, not sleeps between events, so timer granularity does
        # not slow a fast stream down.
        due = start + tokens / tps if pacing.paced else start
        tokens += is_token
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif index % 64 == 63:
            await asyncio.sleep(0)  # unpaced: let other streams have the loop too
        yield data
    if cut_at >= len(events):
        assert fault is not None
        extra, go_on = await _mid_stream(fault, hold, wire)
        if extra:
            yield extra
        if not go_on:
            return
    yield DONE


async def _mid_stream(fault: Fault, hold: Hold | None, wire: Wire) -> tuple[bytes, bool]:
    """What a mid-stream fault sends, and whether the stream goes on after it."""
    kind = fault.kind
    if kind == "stall_after":
        # Silence with the socket open (no keep-alive either), then carry on.
        assert hold is not None
        await hold.wait()
        return b"", True
    if kind == "blank_line":
        return b"\n", True
    if kind == "malformed_line":
        return b"data: {this is not json\n\n", True
    if kind == "error_line":
        # openai-python raises APIError on a data event carrying an "error" key.
        event = wire.error_event(fault.message)
        return (event + DONE if wire.done_after_error else event), False
    if kind == "drop":
        raise AbortConnection
    return b"", False  # close_without_done: a clean end, no finish chunk, no [DONE]
