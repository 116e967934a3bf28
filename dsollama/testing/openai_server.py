"""What the doubles of self-hosted OpenAI-format servers (vLLM, llama-server) share.

Both serve ``POST /v1/chat/completions`` and ``POST /v1/completions`` from a fixed set of
generation slots with a FIFO queue in front (`SlotPool`): a request waits for a slot,
then takes ``prompt_seconds`` to its first token and ``token_seconds`` per token after
that, each request at its own pace (continuous batching). Answers come from `_text`, like
every double's, so an answer cut on one double and continued on another is the
uninterrupted answer.

A subclass says how its server looks: routes, error shapes, rendered answers, metrics, and
two timing facts — whether a stream's status line goes out at once or only with the first
token, and whether the context is checked on arrival or once the request has a slot.

Faults are the shared vocabulary. A request to a generation route takes the first
matching fault; the monitoring routes a test polls while a burst runs (``/metrics``,
``/health``, ``/slots``…) take only faults whose ``path`` names them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ._control import handle_control, is_control_path, refuse_from_loop
from ._deepseek_answer import Plan
from ._deepseek_request import ChatRequest, FimRequest
from ._double import Double
from ._faults import Fault
from ._openai_request import (
    Prefill,
    ServerError,
    count_prompt_tokens,
    parse_chat,
    parse_completion,
    plan_answer,
)
from ._openai_sched import SlotPool
from ._openai_stream import Hold, Pacing, Slot, Wire, json_response, sse_response
from ._prometheus import Histogram
from ._server import AbortConnection, Request, Response, StreamResponse
from ._settings import Configurable

__all__ = ["OpenAIServerDouble", "Rendered", "Stats", "Ticket"]

_CONNECTION_FAULTS = frozenset({"refuse", "reset", "status", "stall_before"})
RouteHandler = Callable[[Request], Awaitable[Response]]


@dataclass(eq=False)
class Ticket:
    """One generation request inside the double, from arrival to the end of its answer."""

    task: int
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    arrived: float
    slot: int | None = None
    started: float | None = None
    "When it took a slot."
    first_token: float | None = None
    ended: float | None = None


@dataclass
class Stats:
    """What the servers count, for their metrics."""

    ttft: Histogram
    e2e: Histogram
    prompt_tokens: int = 0
    generation_tokens: int = 0
    prompt_seconds: float = 0.0
    "Time from taking a slot to the first token, summed."
    generation_seconds: float = 0.0
    "Time from the first token to the end, summed."
    finished: Counter[str] = field(default_factory=Counter)
    "Finished requests by finish_reason."

    def record(self, ticket: Ticket) -> None:
        if ticket.first_token is None or ticket.started is None or ticket.ended is None:
            return  # never generated (client gone while queued, refused in its slot)
        self.ttft.observe(ticket.first_token - ticket.arrived)
        self.e2e.observe(ticket.ended - ticket.arrived)
        self.prompt_tokens += ticket.prompt_tokens
        self.generation_tokens += ticket.completion_tokens
        self.prompt_seconds += ticket.first_token - ticket.started
        self.generation_seconds += ticket.ended - ticket.first_token
        self.finished[ticket.finish_reason] += 1


@dataclass(frozen=True)
class Rendered:
    """One planned answer in a server's shapes: the whole body, or its stream events."""

    body: Callable[[], bytes]
    events: Callable[[], list[tuple[bool, bytes]]]


class OpenAIServerDouble(Configurable, Double):
    """Base of `FakeVLLM` and `FakeLlamaServer` (see the module docstring)."""

    foreign_faults = frozenset({"keepalive", "keepalive_then_close"})
    foreign_owner = "DeepSeek"

    prefill: ClassVar[Prefill]
    stream_headers_at_once: ClassVar[bool] = True
    "A stream's status line goes out on arrival (vLLM), not with the first token (llama-server)."
    context_checked_in_slot: ClassVar[bool] = False
    "The prompt is checked against the context once it has a slot (llama-server)."
    generation_routes: ClassVar[Mapping[str, str]] = {
        "/v1/chat/completions": "chat",
        "/v1/completions": "completion",
    }
    histogram_bounds: ClassVar[tuple[tuple[float, ...], tuple[float, ...]]] = ((1.0,), (1.0,))
    "Bucket bounds of the time-to-first-token and end-to-end histograms."

    # Settings every subclass has (declared for the type checker; set by `configure`).
    prompt_seconds: float
    token_seconds: float
    answer_tokens: int
    thinking_tokens: int

    def __init__(self, *, host: str, port: int) -> None:
        Double.__init__(self, self._handle, host=host, port=port)
        self._pool = SlotPool(self._slot_count(), self._token_capacity())
        self._tasks = itertools.count()
        self._stats = self._new_stats()
        self._started: deque[Ticket] = deque(maxlen=10_000)

    # -- what a subclass says about its server ----------------------------------------------

    def _slot_count(self) -> int:
        raise NotImplementedError

    def _token_capacity(self) -> float:
        """KV-cache tokens the running requests may hold together."""
        raise NotImplementedError

    def _routes(self) -> Mapping[str, Mapping[str, RouteHandler]]:
        """Routes other than the generation ones: path -> method -> handler."""
        raise NotImplementedError

    def _wire(self) -> Wire:
        """The server's bytes around an answer (content types, in-band errors)."""
        raise NotImplementedError

    def _error(self, error: ServerError) -> Response:
        """The server's error answer."""
        raise NotImplementedError

    def _not_found(self, request: Request) -> Response:
        return self._error(ServerError(404, "Not Found"))

    def _method_not_allowed(self, request: Request) -> Response:
        return self._error(ServerError(405, "Method Not Allowed"))

    def _gate(self, request: Request) -> Response | None:
        """An answer that comes before routing (auth, a model still loading), or None."""
        return None

    def _response_model(self, requested: str) -> str:
        """The ``model`` of the answer; raise `ServerError` for a model not served."""
        raise NotImplementedError

    def _check_request(self, request: ChatRequest | FimRequest, body: Mapping[str, Any]) -> None:
        """Checks only this server makes."""

    def _answer_limit(self, prompt: int, asked: int | None) -> int | None:
        """The most tokens the answer may have; raise `ServerError` for a prompt the
        server refuses on arrival."""
        raise NotImplementedError

    def _check_in_slot(self, prompt: int) -> None:
        """For servers that check the prompt once it has a slot (`context_checked_in_slot`)."""

    def _render(
        self, route: str, model: str, plan: Plan, request: ChatRequest | FimRequest, prompt: int
    ) -> Rendered:
        raise NotImplementedError

    def _default_finish_reason(self) -> str:
        """What a ``finish_reason`` fault without one ends the answer with."""
        return "length"

    def _new_stats(self) -> Stats:
        ttft, e2e = self.histogram_bounds
        return Stats(Histogram(ttft), Histogram(e2e))

    # -- load: what tests wait on -------------------------------------------------------------

    def running(self) -> int:
        """Requests holding a slot (generating, or held there by a fault)."""
        return self._pool.running

    def waiting(self) -> int:
        """Requests queued for a slot."""
        return self._pool.waiting

    def wait_for_load(
        self, *, running: int | None = None, waiting: int | None = None, timeout: float = 5.0
    ) -> bool:
        """Block until exactly ``running`` requests hold a slot and ``waiting`` are queued
        (None: any number); False on timeout. Tests wait on this, never on a clock."""

        def reached(pool: SlotPool) -> bool:
            return (running is None or pool.running == running) and (
                waiting is None or pool.waiting == waiting
            )

        return self._pool.wait_for(reached, timeout)

    def generations(self) -> list[Ticket]:
        """Requests that took a slot, in the order they took it (the last 10,000): copies,
        with ``task`` numbered in arrival order, so ``[t.task for t in ...]`` shows FIFO."""
        return [dataclasses.replace(t) for t in tuple(self._started)]

    # -- lifecycle and settings -------------------------------------------------------------

    def _before_start(self) -> None:
        # Queued futures belong to one event loop; a restarted double starts empty.
        self._pool = SlotPool(self._slot_count(), self._token_capacity())

    def _after_configure(self, changed: set[str]) -> None:
        pool = getattr(self, "_pool", None)
        if pool is None:
            return  # still in __init__
        size, capacity = self._slot_count(), self._token_capacity()
        if self._server.running:
            self._server.loop.call_soon_threadsafe(pool.resize, size, capacity)
        else:
            pool.resize(size, capacity)

    def _pacing(self, first_token_seconds: float) -> Pacing:
        per_token = self.token_seconds
        return Pacing(1.0 / per_token if per_token > 0 else 0.0, first_token_seconds)

    # -- request handling -------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response | StreamResponse:
        path = request.path
        if is_control_path(path):
            return await handle_control(request, self, self._server)
        route = self.generation_routes.get(path)
        handler: RouteHandler | None = None
        if route is None:
            methods = self._routes().get(path)
            if methods is None:
                return self._gate(request) or self._not_found(request)
            handler = methods.get(request.method)
            if handler is None:
                return self._gate(request) or self._method_not_allowed(request)
        elif request.method != "POST":
            return self._gate(request) or self._method_not_allowed(request)
        fault = self._faults.take(path, named_only=route is None, body=request.body)
        hold = await Hold.make(self._faults, fault)
        handed_off = False
        try:
            if fault is not None and fault.kind in _CONNECTION_FAULTS:
                early = await self._connection_fault(fault, hold)
                if early is not None:
                    return early
                fault = None
            gate = self._gate(request)
            if gate is not None:
                return gate
            if route is not None:
                result = await self._generate(request, route, fault, hold)
            else:
                assert handler is not None
                result = await self._one_object(await handler(request), fault, hold)
            if isinstance(result, StreamResponse) and hold is not None:
                result.chunks = Slot(result.chunks, hold.cancel)
                handed_off = True
            return result
        except ServerError as exc:
            return self._error(exc)
        finally:
            if not handed_off and hold is not None:
                hold.cancel()

    async def _connection_fault(self, fault: Fault, hold: Hold | None) -> Response | None:
        if fault.kind == "refuse":
            await refuse_from_loop(self._server, fault.seconds, keep_current=False)
            raise AbortConnection
        if fault.kind == "reset":
            raise AbortConnection
        if fault.kind == "status":
            status = fault.status or 500
            return self._error(ServerError(status, fault.message or _STATUS_TEXT.get(status, "")))
        assert hold is not None  # stall_before
        await hold.wait()
        return None

    async def _one_object(
        self, response: Response, fault: Fault | None, hold: Hold | None
    ) -> Response:
        """A monitoring route's answer under a fault that names it."""
        if fault is None or fault.kind == "finish_reason":
            return response
        kind = fault.kind
        if kind == "drop":
            raise AbortConnection
        if kind == "error_line":
            return self._error(ServerError(500, fault.message or _STATUS_TEXT[500]))
        if kind in ("stall_after", "slow_first_token"):
            assert hold is not None
            await hold.wait()
            return response
        if kind == "blank_line":
            response.body = b"\n"
        else:  # malformed_line, close_without_done: the body cut in half
            response.body = response.body[: len(response.body) // 2]
        return response

    # -- generation -------------------------------------------------------------------------

    async def _generate(
        self, request: Request, route: str, fault: Fault | None, hold: Hold | None
    ) -> Response | StreamResponse:
        parsed: ChatRequest | FimRequest
        if route == "chat":
            parsed, body = parse_chat(request.body, prefill=self.prefill)
        else:
            parsed, body = parse_completion(request.body)
        model = self._response_model(parsed.model)
        self._check_request(parsed, body)
        prompt = count_prompt_tokens(parsed)
        limit = self._answer_limit(prompt, parsed.max_tokens)
        plan = plan_answer(
            parsed,
            answer_n=self.answer_tokens,
            thinking_n=self.thinking_tokens if route == "chat" else 0,
            max_tokens=limit,
        )
        if fault is not None and fault.kind == "finish_reason":
            reason = fault.finish_reason or self._default_finish_reason()
            plan, fault = plan.interrupted(fault.after_chunks, reason), None
        rendered = self._render(route, model, plan, parsed, prompt)
        loop = asyncio.get_running_loop()
        ticket = Ticket(
            next(self._tasks), prompt, plan.completion_tokens, plan.finish_reason, loop.time()
        )
        cost = prompt + plan.completion_tokens
        early_headers = fault is not None and fault.kind == "slow_first_token"
        if parsed.stream and (self.stream_headers_at_once or early_headers):
            if self.context_checked_in_slot:
                self._check_in_slot(prompt)  # no status can follow the headers
            response = sse_response(
                rendered.events(), fault, hold, self._pacing(self.prompt_seconds), self._wire()
            )
            response.chunks = Slot(
                self._after_slot(ticket, cost, response.chunks), lambda: self._finish(ticket)
            )
            return response
        handed_off = False
        await self._take_slot(ticket, cost)
        try:
            if self.context_checked_in_slot:
                self._check_in_slot(prompt)
            if self.prompt_seconds > 0:
                await asyncio.sleep(self.prompt_seconds)
            ticket.first_token = loop.time()
            pacing = self._pacing(0.0)
            result: Response | StreamResponse
            if parsed.stream:
                result = sse_response(rendered.events(), fault, hold, pacing, self._wire())
            elif fault is not None and fault.kind == "error_line":
                # A one-object answer cannot carry an in-band error: the server answers 500.
                await asyncio.sleep(pacing.seconds_for(plan.completion_tokens))
                raise ServerError(500, fault.message or _STATUS_TEXT[500])
            else:
                result = await json_response(
                    rendered.body(), plan.completion_tokens, fault, hold, pacing, self._wire()
                )
            if isinstance(result, StreamResponse):
                result.chunks = Slot(result.chunks, lambda: self._finish(ticket))
                handed_off = True
            return result
        finally:
            if not handed_off:
                self._finish(ticket)

    async def _after_slot(
        self, ticket: Ticket, cost: int, chunks: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        """A stream whose status line went out on arrival: queue, then generate."""
        await self._take_slot(ticket, cost)
        loop = asyncio.get_running_loop()
        async for chunk in chunks:
            if ticket.first_token is None:
                ticket.first_token = loop.time()
            yield chunk

    async def _take_slot(self, ticket: Ticket, cost: int) -> None:
        ticket.slot = await self._pool.acquire(cost)
        ticket.started = asyncio.get_running_loop().time()
        self._started.append(ticket)
        self._slot_taken(ticket)

    def _slot_taken(self, ticket: Ticket) -> None:
        """Hook: a request started in its slot."""

    def _finish(self, ticket: Ticket) -> None:
        """The request's answer ended, failed, or its client left: free what it held."""
        if ticket.ended is not None:
            return
        ticket.ended = asyncio.get_running_loop().time()
        if ticket.slot is not None:
            self._slot_freed(ticket)
            self._pool.release(ticket.slot)
        self._stats.record(ticket)

    def _slot_freed(self, ticket: Ticket) -> None:
        """Hook: the request in ``ticket.slot`` ended (before the slot goes to the next)."""


# Default texts of `status` faults: the phrases of the status line (what a proxy or a
# framework says when the server itself gave no message).
_STATUS_TEXT = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
